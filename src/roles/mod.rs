//! The in-cluster data-plane roles: `router` and `deliver --tenant`. (`local` runs both in one
//! process; `controller` is the control plane.)

pub mod deliver;
pub mod router;
