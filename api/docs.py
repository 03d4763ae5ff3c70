"""A documentation page at /docs with no external assets: the OpenAPI document rendered on the
server, with a small inline script to try each operation with a bearer token."""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

import falcon

from api.openapi import openapi_document

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1em;color:#222}
h1{margin-bottom:0}code,pre,textarea{font:13px ui-monospace,monospace}
details{border:1px solid #ddd;border-radius:6px;margin:.5em 0;padding:.4em .8em}
summary{cursor:pointer}.m{display:inline-block;width:4.5em;font-weight:700}
.GET{color:#0a6}.POST{color:#06c}.roles{color:#777;font-size:13px}
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:24em}
textarea{width:100%;height:9em}input{font:inherit}button{font:inherit;margin:.3em 0}
"""

_SCRIPT = """
const tok=document.getElementById('token');tok.value=sessionStorage.getItem('t')||'';
tok.onchange=()=>sessionStorage.setItem('t',tok.value);
async function send(btn){const d=btn.closest('details');let path=d.dataset.path;
 for(const i of d.querySelectorAll('input[data-p]')){path=path.replace('{'+i.dataset.p+'}',
 encodeURIComponent(i.value))}const q=d.querySelector('input[data-q]');
 if(q&&q.value)path+='?'+q.value;const opt={method:d.dataset.method,headers:{}};
 if(tok.value)opt.headers['Authorization']='Bearer '+tok.value;const b=d.querySelector('textarea');
 const f=d.querySelector('input[data-file]'),ct=d.querySelector('select[data-ct]');
 if(b){opt.headers['Content-Type']=ct?ct.value:'application/json';
 opt.body=f&&f.files.length?f.files[0]:b.value}
 const out=d.querySelector('.out');try{const r=await fetch(path,opt);
 out.textContent=r.status+' '+r.statusText+'\\n'+await r.text()}catch(e){out.textContent=e}}
"""


def _schema_name(ref: dict[str, Any]) -> str:
    return str(ref.get("$ref", "")).rsplit("/", 1)[-1]


def _operation_html(path: str, method: str, op: dict[str, Any], schemas: dict[str, Any]) -> str:
    e = html.escape
    roles = ", ".join(op["x-roles"]) or "public"
    parts = [
        f'<details data-path="{e(path)}" data-method="{method.upper()}">',
        f'<summary><span class="m {method.upper()}">{method.upper()}</span><code>{e(path)}</code>'
        f' — {e(op["summary"])} <span class="roles">({e(roles)})</span></summary>',
    ]
    for p in op["parameters"]:
        if p["in"] == "path":
            parts.append(f'<p>{e(p["name"])}: <input data-p="{e(p["name"])}" size="40"></p>')
    queries = [p["name"] for p in op["parameters"] if p["in"] == "query"]
    if queries:
        hint = "&".join(f"{q}=" for q in queries)
        parts.append(f'<p>query: <input data-q="1" size="40" placeholder="{e(hint)}"></p>')
    body = op.get("requestBody")
    if body and "application/json" not in body["content"]:  # a file, sent as it is
        options = "".join(f"<option>{e(t)}</option>" for t in body["content"])
        parts.append(
            '<p>Body: the file, <input type="file" data-file="1"> or its text pasted below, '
            f'sent as <select data-ct="1">{options}</select></p><textarea></textarea>'
        )
    elif body:
        name = _schema_name(body["content"]["application/json"]["schema"])
        parts.append(f"<p>Body <code>{e(name)}</code>:</p>")
        parts.append(f"<pre>{e(json.dumps(schemas[name], indent=1, ensure_ascii=False))}</pre>")
        parts.append("<textarea>{}</textarea>")
    responses = ", ".join(op["responses"])
    parts.append(f"<p>Responses: {e(responses)}</p>")
    parts.append('<button onclick="send(this)">Send</button><pre class="out"></pre></details>')
    return "".join(parts)


@cache
def docs_page() -> str:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    ops = [
        _operation_html(path, method, op, schemas)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>voucher-ledger API</title><style>{_STYLE}</style></head><body>"
        f"<h1>voucher-ledger API</h1><p>{html.escape(doc['info']['description'])}</p>"
        '<p>The machine-readable document: <a href="/v1/openapi.json">/v1/openapi.json</a>.</p>'
        '<p>Bearer token: <input id="token" size="50" placeholder="paste a token"></p>'
        + "".join(ops)
        + f"<script>{_SCRIPT}</script></body></html>"
    )


class Docs:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = docs_page()


class OpenAPI:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps(openapi_document(), ensure_ascii=False)
