//! HTML pieces every page shares: escaping (every string from a spec, a run or the store
//! goes through [`Esc`]), path segments for links, tables, and the page layout with its
//! self-refresh script. The script polls the page's version URL every 2 s (one small
//! query on the server) and fetches the page's live fragment only when the version
//! changed; no JavaScript build step, nothing fetched from elsewhere.

use std::fmt;

/// Escapes text for HTML element content and quoted attribute values.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + c.len_utf8();
        }
        f.write_str(&self.0[last..])
    }
}

/// A paragraph of a report section's text, which is Markdown for the `.md` report: a
/// list where every line starts with `- `, else a paragraph with its line breaks kept;
/// `**bold**` in either. Escaped first, so markers are the only markup.
pub fn report_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    match lines
        .iter()
        .map(|l| l.strip_prefix("- "))
        .collect::<Option<Vec<_>>>()
    {
        Some(items) if !items.is_empty() => {
            let items: Vec<String> = (items.iter())
                .map(|i| format!("<li>{}</li>", bold(&Esc(i).to_string())))
                .collect();
            format!("<ul>{}</ul>", items.concat())
        }
        _ => {
            let lines: Vec<String> = lines.iter().map(|l| bold(&Esc(l).to_string())).collect();
            format!("<p>{}</p>", lines.join("<br>"))
        }
    }
}

/// `**x**` as `<strong>x</strong>`; an unpaired `**` stays as it is.
fn bold(escaped: &str) -> String {
    let parts: Vec<&str> = escaped.split("**").collect();
    if parts.len() % 2 == 0 {
        return escaped.to_string();
    }
    let mut out = String::with_capacity(escaped.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str("<strong>");
            out.push_str(part);
            out.push_str("</strong>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// A URL path segment: unreserved characters kept, everything else percent-encoded.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A table whose header and cells are text (escaped here); `links` makes cell (row,
/// column) a link to the given URL.
pub fn table(
    class: &str,
    header: &[String],
    rows: &[Vec<String>],
    links: &[(usize, usize, String)],
) -> String {
    let mut s = format!("<table class=\"{}\"><thead><tr>", Esc(class));
    for h in header {
        s.push_str(&format!("<th>{}</th>", Esc(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for (i, row) in rows.iter().enumerate() {
        s.push_str("<tr>");
        for (j, cell) in row.iter().enumerate() {
            let cls = state_class(cell);
            let open = if cls.is_empty() {
                "<td>".to_string()
            } else {
                format!("<td class=\"{cls}\">")
            };
            match links.iter().find(|(r, c, _)| *r == i && *c == j) {
                Some((_, _, url)) => s.push_str(&format!(
                    "{open}<a href=\"{}\">{}</a></td>",
                    Esc(url),
                    Esc(cell)
                )),
                None => s.push_str(&format!("{open}{}</td>", Esc(cell))),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// CSS class of a cell that names a run state (coloured), else none.
fn state_class(cell: &str) -> &'static str {
    match cell {
        "done" => "st-done",
        "running" => "st-running",
        "queued" => "st-queued",
        "failed" => "st-failed",
        _ => "",
    }
}

/// Where a page's live part comes from: the version URL polled, the version the page was
/// rendered at, and the fragment URL fetched when the version changes.
pub struct Live<'a> {
    pub version_url: &'a str,
    pub token: &'a str,
    pub fragment_url: &'a str,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#1f3b57;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:baseline}\
header a{color:#fff;font-weight:bold;text-decoration:none}header .db{opacity:.8;font-size:.9em}\
header .live{margin-left:auto;font-size:.85em;opacity:.8}\
main{padding:0 1em 2em}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
th{background:#f0f3f6}td.st-done{color:#1a7f37}td.st-running{color:#0550ae;font-weight:bold}\
td.st-queued{color:#777}td.st-failed{color:#cf222e;font-weight:bold}\
.bar{display:flex;height:.8em;width:16em;background:#eee;border-radius:3px;overflow:hidden}\
.bar span{display:block}.b-done{background:#2da44e}.b-running{background:#218bff}.b-failed{background:#cf222e}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.9em;color:#555}\
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:30em}.note{color:#555;font-size:.9em}\
.pages a{margin-right:.5em}";

const SCRIPT: &str = "(function(){var m=document.getElementById('live');if(!m)return;\
var s=document.getElementById('live-status'),busy=false;\
function tick(){if(busy)return;busy=true;\
fetch(m.dataset.version,{cache:'no-store'}).then(function(r){if(!r.ok)throw r.status;return r.text();})\
.then(function(t){t=t.trim();if(t===m.dataset.token)return;\
return fetch(m.dataset.fragment,{cache:'no-store'}).then(function(f){if(!f.ok)throw f.status;return f.text();})\
.then(function(h){m.innerHTML=h;m.dataset.token=t;if(s)s.textContent='live, updated '+new Date().toLocaleTimeString();});})\
.catch(function(){if(s)s.textContent='server not answering';})\
.then(function(){busy=false;});}\
setInterval(tick,2000);})();";

/// A whole page: header (with the store's name: a SQLite file's name, a PostgreSQL URL
/// with its password redacted by the store),
/// the live part and the refresh script.
pub fn page(title: &str, store: &str, live: Option<&Live>, body: &str) -> String {
    let main = match live {
        Some(l) => format!(
            "<main id=\"live\" data-version=\"{}\" data-token=\"{}\" data-fragment=\"{}\">{body}</main>",
            Esc(l.version_url),
            Esc(l.token),
            Esc(l.fragment_url)
        ),
        None => format!("<main>{body}</main>"),
    };
    let status = if live.is_some() {
        "<span class=\"live\" id=\"live-status\">live</span>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · sweep serve</title><style>{STYLE}</style></head><body>\
         <header><a href=\"/\">sweeps</a><span class=\"db\">store: {}</span>{status}</header>\
         {main}<script>{SCRIPT}</script></body></html>",
        Esc(title),
        Esc(store)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup_and_quotes() {
        assert_eq!(
            Esc("<script>alert('x')</script> & \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(Esc("plain — text").to_string(), "plain — text");
    }

    #[test]
    fn report_text_renders_its_lists_and_bold_and_escapes_the_rest() {
        assert_eq!(
            report_text("- a: **held** <b>\n- b: **not held**"),
            "<ul><li>a: <strong>held</strong> &lt;b&gt;</li><li>b: <strong>not held</strong></li></ul>"
        );
        assert_eq!(
            report_text("one **two**\n- three"),
            "<p>one <strong>two</strong><br>- three</p>"
        );
        // An unpaired marker is text, and markup in a run's label stays text.
        assert_eq!(report_text("a ** b"), "<p>a ** b</p>");
        assert_eq!(
            report_text("**<script>**"),
            "<p><strong>&lt;script&gt;</strong></p>"
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("augment_pairs-1.x"), "augment_pairs-1.x");
        assert_eq!(seg("a/b c<"), "a%2Fb%20c%3C");
    }

    #[test]
    fn a_table_escapes_cells_and_links() {
        let t = table(
            "runs",
            &["reason".into()],
            &[vec!["<b>boom</b>".into()]],
            &[(0, 0, "/run/\"x".into())],
        );
        assert!(t.contains("&lt;b&gt;boom&lt;/b&gt;"));
        assert!(t.contains("href=\"/run/&quot;x\""));
        assert!(!t.contains("<b>"));
    }

    /// The page header shows the store as the store shows it: a URL's password never.
    #[test]
    fn the_page_header_never_shows_the_database_password() {
        let shown = crate::store::redact("postgres://sweep:hunter2@db.example/sweeps");
        let html = page("sweeps", &shown, None, "");
        assert!(html.contains("postgres://sweep:***@db.example/sweeps"));
        assert!(!html.contains("hunter2"));
    }
}
