//! Content negotiation: a console page and an API resource share one path, and the `Accept` header picks which
//! answers. Browsers navigating ask for `text/html` first; `fetch`, curl and API clients do not.

use crate::state::ServerState;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::routing::{on, MethodFilter, MethodRouter};

/// Whether the caller would rather have HTML than JSON: `text/html` is named with a higher quality than any range
/// that covers `application/json`. A bare `*/*` (curl, fetch) or no header at all means JSON.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let html = quality_for(&accept, "text", "html");
    let json = quality_for(&accept, "application", "json");
    html > 0.0 && html > json
}

/// The quality the header gives a media type: from its most specific matching range (exact, then `type/*`,
/// then `*/*`), or 0 when nothing matches.
fn quality_for(accept: &str, wanted_type: &str, wanted_subtype: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let Some((media_type, media_subtype)) = media.split_once('/') else {
            continue;
        };
        let quality = parts
            .filter_map(|parameter| parameter.trim().strip_prefix("q="))
            .find_map(|raw| raw.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let specificity = match (media_type, media_subtype) {
            (t, s) if t == wanted_type && s == wanted_subtype => 3,
            (t, "*") if t == wanted_type => 2,
            ("*", "*") => 1,
            _ => continue,
        };
        if best.is_none_or(|(seen, _)| specificity > seen) {
            best = Some((specificity, quality));
        }
    }
    best.map(|(_, quality)| quality).unwrap_or(0.0)
}

/// One route, two answers: `page` for a browser that prefers HTML, `api` (the REST handler) for everyone else.
/// Both run after the policy check, so both see the same principal and the same refusals.
pub fn html_or_json<P, T>(
    method: MethodFilter,
    api: MethodRouter<ServerState>,
    page: P,
) -> MethodRouter<ServerState>
where
    P: Handler<T, ServerState>,
    T: 'static,
{
    on(
        method,
        move |State(state): State<ServerState>, request: Request| async move {
            let mut response = if prefers_html(request.headers()) {
                page.call(request, state).await
            } else {
                api.call(request, state).await
            };
            // One URL, two representations: caches must key on Accept.
            response
                .headers_mut()
                .append(header::VARY, HeaderValue::from_static("accept"));
            response
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn browsers_get_html_and_programs_get_json() {
        // Chromium's and Firefox's navigation headers.
        assert!(prefers_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        )));
        assert!(prefers_html(&accept("text/html")));
        assert!(!prefers_html(&HeaderMap::new()));
        assert!(!prefers_html(&accept("*/*")));
        assert!(!prefers_html(&accept("application/json")));
        assert!(!prefers_html(&accept("application/json, text/html;q=0.5")));
        assert!(!prefers_html(&accept("text/html;q=0.5, application/*")));
        assert!(!prefers_html(&accept("text/event-stream")));
        assert!(!prefers_html(&accept("text/html;q=0")));
    }
}
