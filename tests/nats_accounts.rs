//! config/nats/accounts.conf is a working least-privilege setup: a nats-server running it,
//! and each role's real code connected as its own user (with its own inbox prefix), deliver
//! events of two tenants end to end (one through jobs, one through a FIFO queue) without a
//! single permission violation; and what a role must not do (another tenant's events, jobs,
//! attempts or inbox; the routers' consumer, for a delivery user; the routes, for a router)
//! is refused by the server.

mod common;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use clap::Parser;
use common::*;
use tokio_util::sync::CancellationToken;
use webhook_operator::{
    controlplane::{context::RouteSink, route_sink::NatsRouteSink},
    dataplane::{
        delivery::TenantData, ingest, route_store, stats::StatsFolder, topology::Authority,
    },
    model::{EndpointConfig, EndpointKey, NamespaceData, Route, SecretLocation, TenantRoutes},
    pipeline::PipelineArgs,
    roles::{self, deliver::DeliverArgs},
};

const USERS: [&str; 5] = [
    "controller",
    "router",
    "deliver_acme",
    "deliver_globex",
    "publisher_acme",
];

fn password(user: &str) -> String {
    format!("pw-{user}-{}", std::process::id())
}

/// nats-server with JetStream and the shipped accounts file, passwords from its environment.
struct SecuredNats {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SecuredNats {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let accounts = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nats/accounts.conf");
        // Includes are relative to the including file: the shipped file goes next to it.
        std::fs::copy(&accounts, dir.path().join("accounts.conf")).expect("copy accounts.conf");
        let config = format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\ninclude ./accounts.conf\n",
            dir.path().join("js"),
        );
        let config_path = dir.path().join("server.conf");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("nats.log")).expect("log");
        let mut command = Command::new(nats_server_bin());
        command
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log);
        for user in USERS {
            command.env(
                format!("WEBHOOK_{}_PASSWORD", user.to_uppercase()),
                password(user),
            );
        }
        let child = command.spawn().expect("nats-server");
        let up = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "nats-server did not start:\n{}",
            std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default()
        );
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    fn violations(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" Violation - "))
            .map(str::to_owned)
            .collect()
    }

    /// A plain client of `user`, with its inbox prefix.
    async fn client(&self, user: &str) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .user_and_password(user.into(), password(user))
            .custom_inbox_prefix(format!("_INBOX_{user}"))
            .request_timeout(Some(Duration::from_secs(2)))
            .connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"))
    }
}

impl Drop for SecuredNats {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- nats-server permission violations ---\n{}",
                self.violations().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Command-line settings of a role connecting as `user`.
fn role_args(nats: &SecuredNats, user: &str) -> Vec<String> {
    [
        "--nats-url",
        &nats.url(),
        "--nats-user",
        user,
        "--nats-password",
        &password(user),
        "--nats-inbox-prefix",
        &format!("_INBOX_{user}"),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ]
    .map(String::from)
    .to_vec()
}

#[derive(Parser)]
struct PipelineCli {
    #[command(flatten)]
    args: PipelineArgs,
}

#[derive(Parser)]
struct DeliverCli {
    #[command(flatten)]
    args: DeliverArgs,
}

fn pipeline_args(nats: &SecuredNats, user: &str) -> PipelineArgs {
    PipelineCli::parse_from(std::iter::once("role".to_owned()).chain(role_args(nats, user))).args
}

fn deliver_args(nats: &SecuredNats, tenant: &str) -> (DeliverArgs, String) {
    let mut args = role_args(nats, &format!("deliver_{tenant}"));
    let admin = format!("http://{}", args[args.len() - 1]);
    args.extend([
        "--tenant".into(),
        tenant.into(),
        "--allow-private-networks".into(),
    ]);
    (
        DeliverCli::parse_from(std::iter::once("deliver".to_owned()).chain(args)).args,
        admin,
    )
}

/// One endpoint, `orders`; globex's is FIFO.
fn routes(tenant: &str, url: &str) -> TenantRoutes {
    let ordering = if tenant == "globex" {
        "fifo"
    } else {
        "unordered"
    };
    let endpoint: EndpointConfig = serde_json::from_value(serde_json::json!({
        "name": "orders",
        "url": url,
        "secret": SecretLocation { name: "orders-signing".into(), key: "secret".into() },
        "timeout": "5s",
        "retry": { "maxAttempts": 3, "initialBackoff": "200ms", "maxBackoff": "1s", "maxAge": "1h" },
        "maxInFlight": 4,
        "ordering": ordering,
    }))
    .expect("endpoint");
    TenantRoutes {
        tenant: tenant.into(),
        endpoints: vec![endpoint],
        routes: vec![Route {
            subscription: "all".into(),
            endpoint: "orders".into(),
            event_types: vec![">".into()],
            filter: None,
        }],
        schemas: Vec::new(),
    }
}

fn signing_keys(tenant: &str) -> TenantData {
    let mut data = NamespaceData::default();
    data.secrets.insert(
        "orders-signing".into(),
        [("secret".to_string(), SECRET.as_bytes().to_vec())].into(),
    );
    TenantData::from([(tenant.to_owned(), data)])
}

async fn delivered(admin: &str) -> u64 {
    let endpoints: serde_json::Value = match reqwest::get(format!("{admin}/v1/endpoints")).await {
        Ok(response) => {
            serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or_default()
        }
        Err(_) => return 0,
    };
    endpoints[0]["delivered"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn each_role_works_with_only_its_own_permissions() {
    init();
    // The roles run in this process: their logs show with the test's output on failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,async_nats=warn")
        .with_test_writer()
        .try_init();
    let nats = SecuredNats::start();
    let receiver = Receiver::start().await;
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();

    // The controller's NATS work: topology (as owner), routes, counters, ingest, clean-up.
    let controller = tokio::time::timeout(
        Duration::from_secs(30),
        pipeline_args(&nats, "controller").connect("controller", Authority::Owner),
    )
    .await
    .unwrap_or_else(|_| panic!("controller set-up stuck; server log:\n{}", nats.log()))
    .expect("controller connects");
    for tenant in ["acme", "globex"] {
        route_store::publish(
            &controller.topology.routes,
            &routes(tenant, &receiver.url(&format!("/{tenant}"))),
        )
        .await
        .expect("controller writes routes");
    }
    tokio::spawn(
        StatsFolder::new(controller.js.clone(), controller.topology.stats.clone())
            .run(cancel.clone()),
    );

    tokio::spawn(roles::router::run(
        pipeline_args(&nats, "router"),
        cancel.clone(),
    ));
    let mut admins = Vec::new();
    for tenant in ["acme", "globex"] {
        let (args, admin) = deliver_args(&nats, tenant);
        let (_keep, references) = tokio::sync::watch::channel(Arc::new(signing_keys(tenant)));
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _keep = _keep;
            roles::deliver::serve(args, references, cancel).await
        });
        admins.push(admin);
    }

    // A service publishes acme's event; the controller's HTTP ingest takes globex's.
    let publisher = jetstream::new(nats.client("publisher_acme").await);
    publisher
        .publish("events.acme.order.paid", Bytes::from_static(b"{\"n\":1}"))
        .await
        .expect("publish")
        .await
        .expect("stored");
    ingest::publish(
        &controller.js,
        ingest::Event {
            namespace: "globex",
            event_type: "invoice.sent",
            idempotency_key: Some("globex-1"),
            content_type: None,
            payload: Bytes::from_static(b"{}"),
        },
        1024,
    )
    .await
    .expect("controller ingests");

    for tenant in ["acme", "globex"] {
        let got = receiver.wait_for(&format!("/{tenant}"), 1).await;
        verify(SECRET, &got[0]).expect("signed");
    }
    for admin in &admins {
        let folded = wait_until(Duration::from_secs(20), || async {
            delivered(admin).await == 1
        })
        .await;
        assert!(folded, "counters not folded by the controller ({admin})");
    }
    let events_stream = controller
        .js
        .get_stream("WEBHOOK_EVENTS")
        .await
        .expect("events stream");
    assert!(
        events_stream
            .consumer_info("fifo_globex_orders")
            .await
            .is_ok(),
        "the router created globex's FIFO queue"
    );
    NatsRouteSink {
        js: controller.js.clone(),
        routes: controller.topology.routes.clone(),
        stats: controller.topology.stats.clone(),
        limits: Default::default(),
    }
    .discard_endpoint(EndpointKey::new("globex", "orders"))
    .await
    .expect("controller discards a deleted endpoint's jobs and FIFO queue");
    assert!(
        events_stream
            .consumer_info("fifo_globex_orders")
            .await
            .is_err(),
        "the FIFO queue went with the endpoint"
    );
    assert_eq!(
        nats.violations(),
        Vec::<String>::new(),
        "the normal flow needs no more than it is granted"
    );

    // What each role must not do.
    let refused = |what: &str, ok: bool| assert!(!ok, "{what} was allowed");
    const WAIT: Duration = Duration::from_secs(3);
    let publish_stored = |js: jetstream::Context, subject: &'static str| async move {
        match tokio::time::timeout(WAIT, js.publish(subject, Bytes::from_static(b"{}"))).await {
            Ok(Ok(ack)) => matches!(tokio::time::timeout(WAIT, ack).await, Ok(Ok(_))),
            _ => false,
        }
    };
    refused(
        "publisher_acme publishing globex's events",
        publish_stored(publisher.clone(), "events.globex.order.paid").await,
    );
    let deliver_acme = jetstream::new(nats.client("deliver_acme").await);
    refused(
        "deliver_acme recording globex's attempts",
        publish_stored(deliver_acme.clone(), "webhook.attempts.globex.orders").await,
    );
    refused(
        "deliver_acme creating jobs",
        publish_stored(deliver_acme.clone(), "webhook.jobs.acme.orders").await,
    );
    // Whether deliver_acme may create a consumer `name` on `stream` filtered to `filter`.
    let consumes = |stream: &'static str, name: &'static str, filter: &'static str| {
        let js = deliver_acme.clone();
        async move {
            js.create_consumer_on_stream(
                pull::Config {
                    durable_name: Some(name.into()),
                    filter_subject: filter.into(),
                    ..Default::default()
                },
                stream,
            )
            .await
            .is_ok()
        }
    };
    refused(
        "deliver_acme consuming globex's jobs",
        consumes(
            "WEBHOOK_JOBS",
            "deliver_globex_orders",
            "webhook.jobs.globex.orders",
        )
        .await,
    );
    refused(
        "deliver_acme reading the events stream",
        consumes("WEBHOOK_EVENTS", "spy", "").await,
    );
    refused(
        "deliver_acme queueing globex's events",
        consumes("WEBHOOK_EVENTS", "fifo_globex_orders", "events.globex.>").await,
    );
    let acme_events = deliver_acme
        .get_stream("WEBHOOK_EVENTS")
        .await
        .expect("deliver_acme sees the events stream");
    let routers: jetstream::consumer::PullConsumer = acme_events
        .get_consumer("router")
        .await
        .expect("consumer info is allowed");
    let stolen = match routers
        .fetch()
        .max_messages(1)
        .expires(WAIT)
        .messages()
        .await
    {
        Ok(mut batch) => matches!(
            tokio::time::timeout(WAIT, futures::StreamExt::next(&mut batch)).await,
            Ok(Some(Ok(_)))
        ),
        Err(_) => false,
    };
    refused("deliver_acme pulling from the routers' consumer", stolen);
    refused(
        "deliver_acme deleting the routers' consumer",
        acme_events.delete_consumer("router").await.is_ok(),
    );
    let router = async_nats::jetstream::new(nats.client("router").await);
    let routes_store = router
        .get_key_value("webhook-routes")
        .await
        .expect("router reads the bucket");
    refused(
        "router writing routes",
        matches!(
            tokio::time::timeout(WAIT, routes_store.put("acme", Bytes::from_static(b"{}"))).await,
            Ok(Ok(_))
        ),
    );
    let snoop = nats.client("deliver_acme").await;
    let _ = snoop.subscribe("_INBOX_deliver_globex.>").await;
    let _ = snoop.subscribe("_INBOX.>").await;
    let _ = snoop.flush().await;

    let expected = [
        ("deliver_acme", "Subscription", "_INBOX_deliver_globex.>"),
        ("deliver_acme", "Subscription", "_INBOX.>"),
        ("publisher_acme", "Publish", "events.globex.order.paid"),
        ("deliver_acme", "Publish", "webhook.attempts.globex.orders"),
        ("deliver_acme", "Publish", "webhook.jobs.acme.orders"),
        (
            "deliver_acme",
            "Publish",
            "$JS.API.CONSUMER.CREATE.WEBHOOK_JOBS.deliver_globex_orders.webhook.jobs.globex.orders",
        ),
        (
            "deliver_acme",
            "Publish",
            "$JS.API.CONSUMER.CREATE.WEBHOOK_EVENTS.spy",
        ),
        (
            "deliver_acme",
            "Publish",
            "$JS.API.CONSUMER.CREATE.WEBHOOK_EVENTS.fifo_globex_orders.events.globex.>",
        ),
        (
            "deliver_acme",
            "Publish",
            "$JS.API.CONSUMER.MSG.NEXT.WEBHOOK_EVENTS.router",
        ),
        (
            "deliver_acme",
            "Publish",
            "$JS.API.CONSUMER.DELETE.WEBHOOK_EVENTS.router",
        ),
        ("router", "Publish", "$KV.webhook-routes.acme"),
    ]
    .map(|(user, kind, subject)| {
        (
            format!("\"WEBHOOKS/user:{user}\""),
            format!("{kind} Violation - Subject \"{subject}\""),
        )
    });
    let seen = wait_until(Duration::from_secs(5), || async {
        let violations = nats.violations();
        expected.iter().all(|(user, what)| {
            violations
                .iter()
                .any(|v| v.contains(user) && v.contains(what))
        })
    })
    .await;
    assert!(
        seen,
        "expected refusals missing; the server logged:\n{}",
        nats.violations().join("\n")
    );
}
