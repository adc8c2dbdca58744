//! The HTML: one layout, and every value that reaches a page escaped.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// `s`, safe inside HTML text and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:44rem;padding:1rem;color:#1b1b1b}\
nav{display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;border-bottom:1px solid #ddd;padding-bottom:.5rem}\
nav form{margin-left:auto}\
button,input{font:inherit}\
button{padding:.45rem 1rem;border:1px solid #1b4d8c;border-radius:.3rem;background:#1b4d8c;color:#fff;cursor:pointer}\
button.danger{background:#a11;border-color:#a11}\
button:focus-visible,a:focus-visible,input:focus-visible{outline:3px solid #f90;outline-offset:2px}\
label{display:block;margin:.5rem 0}\
input[type=text],input[type=password]{display:block;width:100%;max-width:20rem;padding:.35rem;box-sizing:border-box}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem;border-bottom:1px solid #eee;word-break:break-all}\
.error{border-left:4px solid #a11;padding:.25rem .75rem;background:#fdf0f0}\
.ok{border-left:4px solid #1a7f37;padding:.25rem .75rem;background:#eefbf1}";

/// A whole page. `nav` is the signed-in user's name and the CSRF token of the sign-out
/// form, when there is one.
pub fn page(title: &str, nav: Option<(&str, &str)>, body: &str) -> String {
    page_with_head(title, nav, "", body)
}

/// [`page`], with `head` (trusted markup) added to the document's head.
pub fn page_with_head(title: &str, nav: Option<(&str, &str)>, head: &str, body: &str) -> String {
    let nav = match nav {
        Some((name, csrf)) => format!(
            r#"<nav><a href="/">Home</a><a href="/upload">Upload</a><a href="/library">Library</a><a href="/delete">Delete my data</a>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><span>{}</span> <button>Sign out</button></form></nav>"#,
            esc(csrf),
            esc(name)
        ),
        None => "<nav><a href=\"/\">Home</a></nav>".to_owned(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · digi.me web app</title><style>{STYLE}</style>{head}</head><body>{nav}<main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A one-button form that POSTs to `action`.
pub fn button(action: &str, csrf: &str, label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="{}">{}<button class="{}">{}</button></form>"#,
        esc(action),
        csrf_field(csrf),
        esc(class),
        esc(label)
    )
}

/// An error page with a way on.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        r#"<p class="error">{}</p><p><a href="/">Back to the start</a></p>"#,
        esc(message)
    );
    (status, Html(page(title, None, &body))).into_response()
}

/// Unix seconds as an HTTP date (or the number, past year 9999).
pub fn when(secs: i64) -> String {
    u64::try_from(secs)
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        .filter(|t| *t < std::time::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799))
        .map(httpdate::fmt_http_date)
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let p = page("<t>", Some(("<b>", "\"c")), "");
        assert!(!p.contains("<t>") && !p.contains("<b>") && !p.contains("\"c\""));
        assert_eq!(when(-1), "-1");
        assert_eq!(when(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(when(i64::MAX), i64::MAX.to_string());
    }
}
