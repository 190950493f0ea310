//! The page's flame graphs: inferno's SVG documents, each in its own
//! `<iframe srcdoc>` (see the parent module's docs for why).
//!
//! Uses [`crate::flame`] to draw and the page's escaper.

use std::fmt::Write as _;
use std::io;

use super::{escape, fmt_err};
use crate::flame::{self, Metric};
use crate::report::Report;

/// The `height` attribute of an SVG's root element.
pub(super) fn svg_height(svg: &str) -> Option<u32> {
    let start = svg.find("<svg")?;
    let tag = &svg[start..start + svg[start..].find('>')?];
    let at = tag.find(" height=\"")? + " height=\"".len();
    let end = tag[at..].find('"')?;
    tag[at..at + end].trim().parse().ok()
}

/// The flame graph `svg` as an HTML document for an `<iframe srcdoc>`: the
/// XML declaration and doctype go (an HTML parser has no use for them), and
/// `history.replaceState` becomes a no-op (see the module docs).
pub(super) fn flame_document(svg: &str) -> String {
    let body = svg.find("<svg").map_or(svg, |i| &svg[i..]);
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <style>html,body{{margin:0;padding:0;background:white;overflow:hidden}}svg{{display:block;width:100%}}</style>\
         <script>try{{history.replaceState=function(){{}};}}catch(e){{}}</script>\
         </head><body>{body}</body></html>"
    )
}

pub(super) fn flames(h: &mut String, r: &Report) -> io::Result<()> {
    let mut metrics = vec![Metric::Leaked, Metric::Peak, Metric::Allocated];
    if r.summary.temporary_allocations > 0 {
        metrics.push(Metric::Temporary);
    }
    h.push_str(
        "<section id=\"flamegraphs\">\n<h2>Flame graphs</h2>\n\
         <p class=\"muted\">Each frame is as wide as its weight; callers below, callees above. \
         Click a frame to zoom in, a lower frame (or \u{201c}Reset Zoom\u{201d}) to zoom out; hover for \
         the figures. The search below highlights matching functions in every graph \
         (a regular expression, as inferno's own Search button takes) and says how much of each it covers.</p>\n\
         <form id=\"flame-search\" role=\"search\"><label for=\"search-term\">Search functions:</label>\
         <input type=\"search\" id=\"search-term\" placeholder=\"name or regular expression, e.g. ^leak_\" autocomplete=\"off\">\
         <button type=\"submit\">Search</button><button type=\"button\" id=\"search-reset\">Reset</button>\
         <span id=\"search-result\" aria-live=\"polite\"></span></form>\n",
    );
    for m in metrics {
        let mut svg = Vec::new();
        flame::render_svg(r, m, &mut svg)?;
        let svg = String::from_utf8_lossy(&svg);
        let height = svg_height(&svg).unwrap_or(400) + 2;
        let label = m.label();
        let cap = {
            let mut c = label.to_owned();
            if let Some(first) = c.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            c
        };
        write!(
            h,
            "<figure class=\"flame\" id=\"flame-{id}\"><figcaption>{cap}: {total}\
             <span class=\"matched\" data-metric=\"{id}\"></span></figcaption>\n\
             <iframe class=\"flame-frame\" data-metric=\"{id}\" title=\"Flame graph of the {label}\" \
             height=\"{height}\" loading=\"eager\" srcdoc=\"{doc}\"></iframe></figure>\n",
            id = m.as_str(),
            total = escape(&m.describe_total(r)),
            doc = escape(&flame_document(&svg)),
        )
        .map_err(fmt_err)?;
    }
    h.push_str("</section>\n");
    Ok(())
}
