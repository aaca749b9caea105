//! HTML building blocks. Every value that comes from the database, a device or a request goes
//! through [`esc`] (text and attribute values alike) before it is written into a page.

use std::fmt::Write;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub use keel_tuf::store::percent_encode as url_part;

/// A millisecond timestamp as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "?".into(),
    }
}

/// How long ago `ms` was, relative to `now` (both milliseconds), e.g. `5 s ago`.
pub fn ago(ms: i64, now: i64) -> String {
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        s if s < 0 => "in the future".into(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}

/// A `<span class="badge state-…">` for a status word.
pub fn badge(status: &str) -> String {
    let class: String = status
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!(
        "<span class=\"badge state-{class}\" data-status=\"{}\">{}</span>",
        esc(status),
        esc(status)
    )
}

/// Who is looking at a page, for the header.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub tenant: &'a str,
    pub csrf: &'a str,
}

/// The whole page: header with navigation, `body` (already escaped HTML) and the script.
pub fn page(title: &str, active: &str, viewer: Option<&Viewer>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · keel</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/ui/assets/dashboard.css\">\
         <script src=\"/ui/assets/dashboard.js\" defer></script></head><body>",
        esc(title)
    );
    out.push_str("<header><a class=\"brand\" href=\"/ui/fleet\">keel</a>");
    if let Some(viewer) = viewer {
        out.push_str("<nav>");
        for (key, href, label) in [
            ("fleet", "/ui/fleet", "Fleet"),
            ("software", "/ui/software", "Artifacts & sets"),
            ("rollouts", "/ui/rollouts", "Rollouts"),
            ("tuf", "/ui/tuf", "TUF repository"),
        ] {
            let class = if key == active {
                " class=\"active\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{href}\"{class}>{label}</a>");
        }
        if viewer.role == "admin" {
            let class = if active == "users" {
                " class=\"active\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"/ui/users\"{class}>Users</a>");
            let class = if active == "audit" {
                " class=\"active\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"/ui/audit\"{class}>Audit log</a>");
        }
        let _ = write!(
            out,
            "</nav><div class=\"who\"><span id=\"who\" data-role=\"{role}\">{name} · {role} · tenant {tenant}</span>\
             <form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"link\">Log out</button></form></div>",
            role = esc(viewer.role),
            name = esc(viewer.name),
            tenant = esc(viewer.tenant),
            csrf = esc(viewer.csrf),
        );
    }
    out.push_str("</header><main>");
    out.push_str(body);
    out.push_str("</main></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url_part("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(badge("in_sync\"><x"), "<span class=\"badge state-in_syncx\" data-status=\"in_sync&quot;&gt;&lt;x\">in_sync&quot;&gt;&lt;x</span>");
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(ago(0, 5_000), "5 s ago");
        assert_eq!(ago(0, 3 * 3_600_000), "3 h ago");
    }
}
