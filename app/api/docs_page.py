"""HTML pages served without any CDN: /docs (renders /openapi.json) and the fallback `/`.

Their inline <style> and <script> are allowed by hash in the Content-Security-Policy
(`INLINE_HASHES`, computed from the very strings served), so no 'unsafe-inline' is needed.
"""

from __future__ import annotations

import base64
import hashlib

DOCS_STYLE = """
 body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
 header{background:#1d2330;color:#fff;padding:14px 24px}
 header a{color:#9cc3ff} main{max-width:1000px;margin:0 auto;padding:16px 24px}
 .op{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:10px 0}
 .op summary{cursor:pointer;padding:8px 12px;display:flex;gap:12px;align-items:center}
 .m{font:600 12px monospace;padding:2px 8px;border-radius:4px;color:#fff;min-width:44px;
    text-align:center}
 .get{background:#2b7de9}.post{background:#1f9d55}.delete{background:#d64545}
 .path{font-family:monospace;font-weight:600}.body{padding:4px 16px 12px}
 table{border-collapse:collapse;width:100%;font-size:14px}
 td,th{border-bottom:1px solid #eef0f4;text-align:left;padding:4px 6px;vertical-align:top}
 code,pre{font-family:ui-monospace,monospace;font-size:13px}
 pre{background:#f2f4f7;padding:8px;border-radius:4px;overflow:auto;max-height:360px}
 .lock{color:#b7791f;font-size:13px} a.ref{color:#2b6cb0}
"""

DOCS_SCRIPT = """
const el = (tag, attrs, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  for (const kid of kids) n.append(kid);
  return n;
};
const refName = (ref) => ref.split("/").pop();
function typeOf(schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.type === "array") return typeOf(schema.items) + "[]";
  return schema.type || "any";
}
function schemaNode(schema) {
  if (schema && schema.$ref) {
    const name = refName(schema.$ref);
    return el("a", {href: "#schema-" + name, class: "ref"}, name);
  }
  return el("code", {}, typeOf(schema));
}
function renderOp(path, method, op) {
  const head = el("summary", {}, el("span", {class: "m " + method}, method.toUpperCase()),
    el("span", {class: "path"}, path), el("span", {}, op.summary || ""));
  if (op.security) head.append(el("span", {class: "lock"}, "needs a key"));
  const body = el("div", {class: "body"});
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
      el("th", {}, "type"), el("th", {}, "description")));
    for (const p of op.parameters) {
      t.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? " *" : ""))),
        el("td", {}, p.in), el("td", {}, schemaNode(p.schema)), el("td", {}, p.description || "")));
    }
    body.append(el("h4", {}, "Parameters"), t);
  }
  if (op.requestBody) {
    const content = op.requestBody.content["application/json"];
    body.append(el("h4", {}, "Body (application/json)"), schemaNode(content.schema));
  }
  const t = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning"),
    el("th", {}, "body")));
  for (const [code, r] of Object.entries(op.responses || {})) {
    const cell = el("td", {});
    for (const [type, c] of Object.entries(r.content || {})) {
      // A stream (text/event-stream) documents each of its events with itemSchema.
      const shown = c.itemSchema
        ? el("code", {}, "each event: {" +
             Object.keys(c.itemSchema.properties || {}).join(", ") + "}")
        : schemaNode(c.schema);
      cell.append(el("div", {}, el("small", {}, type + " "), shown));
    }
    t.append(el("tr", {}, el("td", {}, el("code", {}, code)), el("td", {}, r.description || ""),
      cell));
  }
  body.append(el("h4", {}, "Responses"), t);
  const open = location.hash === "#all" ? {open: ""} : {};
  return el("details", {class: "op", ...open}, head, body);
}
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("ver").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("desc").textContent = doc.info.description || "";
  const ops = document.getElementById("ops");
  ops.textContent = "";
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) ops.append(renderOp(path, method, op));
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    schemas.append(el("details", {class: "op", id: "schema-" + name},
      el("summary", {}, el("span", {class: "path"}, name)),
      el("div", {class: "body"}, el("pre", {}, JSON.stringify(schema, null, 2)))));
  }
}).catch((err) => { document.getElementById("ops").textContent = "Failed: " + err; });
"""

DOCS_HTML = ("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dagq API</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>""" + DOCS_STYLE + """</style></head>
<body><header><strong>dagq API</strong> &middot; <span id="ver"></span>
 &middot; <a href="/openapi.json">openapi.json</a> &middot; <a href="/">dashboard</a></header>
<main><p id="desc"></p><div id="ops">Loading /openapi.json &hellip;</div>
<h2>Schemas</h2><div id="schemas"></div></main>
<script>"""
             + DOCS_SCRIPT + """</script></body></html>
""")

FALLBACK_STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:640px;margin:48px auto;
padding:0 16px;color:#1d2330}code{background:#f2f4f7;padding:1px 4px}"""

FALLBACK_INDEX_HTML = ("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dagq</title>
<link rel="icon" href="data:,">
<style>""" + FALLBACK_STYLE + """</style></head>
<body><h1>dagq</h1>
<p>The API is up. The dashboard is not installed in this build.</p>
<ul><li><a href="/docs">API reference</a> (<a href="/openapi.json">openapi.json</a>)</li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>,
<a href="/metrics">/metrics</a></li></ul>
<p>Every <code>/v1</code> route needs <code>Authorization: Bearer &lt;key&gt;</code>
(<code>dagq keys create --tenant NAME</code>).</p></body></html>
""")


def csp_hash(text: str) -> str:
    """A CSP source expression allowing exactly this inline <script> or <style> body."""
    digest = hashlib.sha256(text.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


INLINE_HASHES = {"script": (csp_hash(DOCS_SCRIPT),),
                 "style": (csp_hash(DOCS_STYLE), csp_hash(FALLBACK_STYLE))}
