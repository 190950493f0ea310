(function () {
  "use strict";
  var flames = Array.prototype.slice.call(document.querySelectorAll("iframe.flame-frame"));
  // The window of a flame graph whose inferno script has run, else null
  // (a graph with nothing to draw has no script).
  function flameWindow(f) {
    try {
      var w = f.contentWindow;
      return w && typeof w.search === "function" && w.document.getElementById("frames") ? w : null;
    } catch (e) {
      return null;
    }
  }
  function matchedText(w) {
    var m = w.document.getElementById("matched");
    if (!m || m.classList.contains("hide")) return "";
    return m.textContent.trim();
  }
  // Runs inferno's own search in every graph; returns what each matched.
  function runSearch(term) {
    var results = [];
    flames.forEach(function (f) {
      var metric = f.getAttribute("data-metric");
      var label = document.querySelector('.matched[data-metric="' + metric + '"]');
      var w = flameWindow(f);
      var res = { metric: metric, matched: "", error: "" };
      if (w) {
        // inferno's Search button resets a shown search before a new one.
        if (w.searching) w.search_prompt();
        if (term) {
          try { w.search(term); res.matched = matchedText(w); }
          catch (e) { res.error = "not a regular expression: " + e.message; }
        }
      } else if (term) {
        res.error = "nothing to search";
      }
      if (label) label.textContent = term ? (res.error || res.matched || "no match") : "";
      results.push(res);
    });
    var out = document.getElementById("search-result");
    if (out) {
      out.textContent = term ? results.map(function (r) {
        return r.metric + ": " + (r.error || r.matched || "no match");
      }).join(" \u00b7 ") : "";
    }
    return results;
  }
  var form = document.getElementById("flame-search");
  var input = document.getElementById("search-term");
  if (form && input) {
    form.addEventListener("submit", function (e) { e.preventDefault(); runSearch(input.value); });
    document.getElementById("search-reset").addEventListener("click", function () {
      input.value = "";
      runSearch("");
    });
  }

  // #selftest=TERM: type TERM into the search box, search, and report in
  // <pre id="selftest">, one line each:
  //   term TERM
  //   timeline polylines N circles N
  //   flame METRIC frames N rects N matched TEXT|none highlighted TITLE|TITLE...
  //   done
  function selftest(term) {
    var lines = ["term " + term];
    var tl = document.querySelector("#timeline svg");
    lines.push("timeline polylines " + (tl ? tl.querySelectorAll("polyline").length : 0) +
               " circles " + (tl ? tl.querySelectorAll("circle").length : 0));
    input.value = term;
    if (form.requestSubmit) form.requestSubmit(); else runSearch(term);
    flames.forEach(function (f) {
      var metric = f.getAttribute("data-metric");
      var w = flameWindow(f);
      if (!w) {
        var d = null;
        try { d = f.contentDocument; } catch (e) { d = null; }
        var drawn = d ? d.querySelectorAll("svg text").length : 0;
        lines.push("flame " + metric + " frames 0 rects 0 matched none (no script; " + drawn + " texts)");
        return;
      }
      var doc = w.document;
      var groups = doc.querySelectorAll("#frames > g");
      var rects = doc.querySelectorAll("#frames rect");
      var hl = [];
      Array.prototype.forEach.call(rects, function (r) {
        // inferno saves a highlighted frame's own color in fg:orig_fill.
        if (r.getAttribute("fg:orig_fill") !== null) {
          var t = r.parentNode.querySelector("title");
          hl.push(t ? t.textContent : "?");
        }
      });
      lines.push("flame " + metric + " frames " + groups.length + " rects " + rects.length +
                 " matched " + (matchedText(w) || "none") + " highlighted " + (hl.join("|") || "none"));
    });
    lines.push("done");
    var pre = document.getElementById("selftest");
    pre.textContent = lines.join("\n") + "\n";
    pre.hidden = false;
  }
  var m = /^#selftest=(.*)$/.exec(window.location.hash);
  if (m) {
    var term = decodeURIComponent(m[1]);
    var go = function () { setTimeout(function () { selftest(term); }, 100); };
    if (document.readyState === "complete") go(); else window.addEventListener("load", go);
  }
})();
