//! The read-only web dashboard at `GET /dashboard`: three static files embedded in the binary.
//!
//! The page reads the admin API with URLs relative to itself, so it also works behind a path
//! prefix (`kubectl proxy`, the Kubernetes API server's service proxy). Its one write is the
//! Replay button. A strict Content-Security-Policy allows only these files and same-origin
//! requests; the script builds the page from text nodes, never from HTML.

use axum::{
    Router,
    http::header,
    response::{IntoResponse, Redirect},
    routing::get,
};

use super::AdminState;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard's routes, merged into the admin router.
pub fn routes() -> Router<AdminState> {
    static_routes()
}

fn static_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        // The page's relative URLs need the path without a trailing slash.
        .route(
            "/dashboard/",
            get(|| async { Redirect::permanent("../dashboard") }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Always revalidate: a new binary serves a new page.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use axum::{
        body::Body,
        http::{Request, StatusCode, header},
    };
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, http::HeaderMap, String) {
        let response = static_routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn serves_the_page_and_every_file_it_references() {
        let (status, headers, page) = get("/dashboard").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let references = regex::Regex::new(r#"(?:src|href)="(dashboard/[^"]+)""#).unwrap();
        let files: Vec<&str> = references
            .captures_iter(&page)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        assert_eq!(files, ["dashboard/style.css", "dashboard/app.js"]);
        for file in files {
            let (status, headers, body) = get(&format!("/{file}")).await;
            assert_eq!(status, StatusCode::OK, "{file}");
            assert!(!body.is_empty(), "{file}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[tokio::test]
    async fn trailing_slash_redirects_to_the_page() {
        let (status, headers, _) = get("/dashboard/").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[header::LOCATION], "../dashboard");
    }

    /// Data from the API reaches the page only as text: the script never parses HTML.
    #[test]
    fn script_never_parses_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
        ] {
            assert!(!SCRIPT.contains(sink), "app.js uses {sink}");
        }
        // Inline scripts and styles would be blocked by the Content-Security-Policy.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
    }
}
