"""One self-contained HTML page for a check result (no network, inline CSS and JS).

Rules and invariants:
- Per partition, each process gets a row and each op a bar from invocation to completion
  on a shared time axis (`time` when every op has one, else event positions). Ops with
  no completion run to the right edge, dashed.
- Colours: linearised (green), the op that could not be linearised (red), the rest of the
  failing window (orange), not reached / dropped (grey). Hover or click a bar to see the
  op, its position in the linearisation and the state before and after it.
- All data is embedded as JSON in one <script> element; `</` is escaped so no value can
  close the script early, and the page builds its SVG from that data.
- Failing partitions are drawn first; at most `max_partitions` partitions and
  `max_ops` ops per partition are drawn so the page stays small.
- A failing partition's first screen is its explanation: the sentence saying what went
  wrong (when the window is a common anomaly), the op that could not be linearised and
  the state before it, and a timeline zoomed to the failing window with that op marked
  and named on the drawing itself. Then the longest linearizable prefix, then the whole
  history behind a control. Nothing unknown is printed as a placeholder (no "line None").
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from kvstore.checker.result import CheckResult, PartitionResult, _j


def _short(v: Any, n: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n // 2 - 2] + "..." + r[-(n // 2 - 2) :]


def _partition_data(p: PartitionResult, max_ops: int) -> dict[str, Any]:
    use_time = all(
        o.call_time is not None and (o.ret is None or o.ret_time is not None) for o in p.ops
    )
    pos = {s.op.id: (n, s) for n, s in enumerate(p.steps)}
    ce = p.counterexample
    window = {o.id for o in ce.window} if ce else set()
    blocked = ce.blocked.id if ce else None
    ops = []
    for o in p.ops[:max_ops]:
        start = o.call_time if use_time else o.call
        end = (o.ret_time if use_time else o.ret) if o.ret is not None else None
        if o.id == blocked:
            cls = "blocked"
        elif o.id in window:
            cls = "window"
        elif o.id in pos:
            cls = "lin"
        else:
            cls = "other"
        d: dict[str, Any] = {
            "p": str(o.process),
            "s": start,
            "e": end,
            "c": cls,
            "t": o.describe(),
            "l": o.line,
            "st": o.status,
        }
        if o.id in pos:
            n, s = pos[o.id]
            d["n"] = n + 1
            d["b"] = _short(s.state_before)
            d["a"] = _short(s.state_after)
        ops.append(d)
    info: dict[str, Any] = {
        "key": _short(p.key, 40) if p.key is not None else "(single register)",
        "verdict": p.verdict,
        "unit": "ns" if use_time else "event",
        "ops": ops,
        "truncated": max(0, len(p.ops) - max_ops),
        "lin": [
            {
                "n": n + 1,
                "t": s.op.describe(),
                "b": _short(s.state_before),
                "a": _short(s.state_after),
            }
            for n, s in enumerate(p.steps[:max_ops])
        ],
    }
    if ce is not None:
        info["blocked"] = ce.blocked.describe()
        info["window"] = [o.describe() for o in ce.window]
        info["minimal"] = ce.window_minimal
        info["prefix_state"] = _short(ce.prefix_state)
    return info


_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:2em}
.v-linearizable{color:#1a7f37}.v-not{color:#c62828}.v-unknown{color:#8a6d00}
svg{border:1px solid #ddd;background:#fcfcfc}
rect.lin{fill:#6cc070}rect.blocked{fill:#e53935}rect.window{fill:#ff9800}
rect.other{fill:#bbb}rect.info{stroke:#555;stroke-dasharray:4 2;fill-opacity:.5}
rect:hover,rect.sel{stroke:#000;stroke-width:2}text.failing{fill:#c62828;font-weight:bold}
p.why{font-size:1.05em;background:#fff3e0;padding:.5em;border-left:4px solid #e53935}
#tip{position:fixed;background:#fff;border:1px solid #888;padding:6px 8px;
font:12px monospace;pointer-events:none;display:none;max-width:60em;white-space:pre-wrap}
table{border-collapse:collapse;font:12px monospace}td,th{border:1px solid #ddd;padding:2px 6px}
tr.hl td{background:#ffe0b2}details{margin:.5em 0}.lg span{padding:0 .6em;margin-right:.5em}
"""

_JS = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const tip = document.getElementById('tip');
const ESC={'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'};
function esc(s){return String(s).replace(/[&<>"]/g,c=>ESC[c]);}
function text(o){
  let s = o.t + (o.l!=null ? '   [line '+o.l+']' : '');
  if (o.n!=null) s += '\nlinearised #'+o.n+'\nstate before: '+o.b+'\nstate after:  '+o.a;
  else if (o.c==='blocked') s += '\ncould not be linearised';
  else s += '\nnot in the linearisation shown';
  return s;
}
function draw(host, ops, P, pi, named){
  const procs = [...new Set(ops.map(o=>o.p))].sort((a,b)=>(+a-+b)||a.localeCompare(b));
  let lo=Infinity, hi=-Infinity;
  ops.forEach(o=>{lo=Math.min(lo,o.s); hi=Math.max(hi,o.e==null?o.s:o.e);});
  if (!isFinite(lo)) { host.textContent='(no operations)'; return; }
  hi = hi + (hi-lo)*(named?0.35:0.03) + 1;
  const W=Math.max(900, Math.min(6000, ops.length*14)), L=60, R=10, RH=named?24:18;
  const H=procs.length*RH+30;
  const x=t=>L+(t-lo)/(hi-lo)*(W-L-R);
  let s='<svg width="'+W+'" height="'+H+'" xmlns="http://www.w3.org/2000/svg">';
  procs.forEach((p,i)=>{s+='<text x="4" y="'+(i*RH+13)+'" font-size="11">p'+esc(p)+'</text>';});
  ops.forEach(o=>{
    const i=P.ops.indexOf(o), y=procs.indexOf(o.p)*RH+2, x0=x(o.s), x1=o.e==null?W-R:x(o.e);
    const cls=o.c+(o.e==null?' info':'');
    s+='<rect class="'+cls+'" data-i="'+i+'" x="'+x0.toFixed(1)+'" y="'+y+'" width="'+
       Math.max(2,x1-x0).toFixed(1)+'" height="'+(RH-5)+'" rx="2"></rect>';
    // its name beside the bar: after it, or before it near the right edge
    const left = x1 > W*0.55;
    if (named) s+='<text class="name'+(o.c==='blocked'?' failing':'')+'" x="'+
       (left ? x0-4 : Math.max(2,x1-x0)+x0+4).toFixed(1)+'" y="'+(y+12)+
       '" text-anchor="'+(left?'end':'start')+'" font-size="11">'+
       esc(o.c==='blocked'?'\u2716 '+o.t+'  (cannot be linearised)':o.t)+'</text>';
  });
  s+='<text x="'+L+'" y="'+(H-6)+'" font-size="10">'+lo+'</text>';
  s+='<text x="'+(W-R-90)+'" y="'+(H-6)+'" font-size="10">'+hi.toFixed(0)+
     ' ('+P.unit+')</text></svg>';
  host.innerHTML=s;
  host.querySelectorAll('rect').forEach(r=>{
    const o=P.ops[+r.dataset.i];
    r.addEventListener('mousemove',e=>{tip.style.display='block';tip.textContent=text(o);
      tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';});
    r.addEventListener('mouseleave',()=>{tip.style.display='none';});
    r.addEventListener('click',()=>{
      host.querySelectorAll('rect.sel').forEach(q=>q.classList.remove('sel'));
      r.classList.add('sel');
      document.getElementById('sel'+pi).textContent=text(o);
      if (o.n!=null){const row=document.getElementById('r'+pi+'_'+o.n);
        if(row){document.querySelectorAll('tr.hl').forEach(t=>t.classList.remove('hl'));
          row.classList.add('hl');}}
    });
  });
}
D.parts.forEach((P, pi) => {
  draw(document.getElementById('p'+pi), P.ops, P, pi, false);
  const zoom = document.getElementById('w'+pi);
  if (zoom) draw(zoom, P.ops.filter(o=>o.c==='blocked'||o.c==='window'), P, pi, true);
});
"""


def _line(line: int | None) -> str:
    return f" (line {line})" if line is not None else ""


def render_html(result: CheckResult, *, max_partitions: int = 50, max_ops: int = 3000) -> str:
    parts = sorted(result.partitions, key=lambda p: (p.verdict != "not linearizable", repr(p.key)))
    shown = parts[:max_partitions]
    data = {"parts": [_partition_data(p, max_ops) for p in shown]}
    payload = json.dumps(data, default=lambda v: repr(_j(v))).replace("</", "<\\/")
    vclass = {"linearizable": "v-linearizable", "not linearizable": "v-not"}.get(
        result.verdict, "v-unknown"
    )
    out: list[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>check: {html.escape(result.verdict)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(result.source or 'history')}: "
        f"<span class='{vclass}'>{html.escape(result.verdict)}</span></h1>",
        f"<p>model <b>{html.escape(result.model)}</b>, format {html.escape(str(result.format))}, "
        f"{result.ops} ops, {len(result.partitions)} partition(s), {result.elapsed:.3f} s.</p>",
        "<p class='lg'><span style='background:#6cc070'>linearised</span>"
        "<span style='background:#e53935'>could not be linearised</span>"
        "<span style='background:#ff9800'>failing window</span>"
        "<span style='background:#bbb'>not reached / dropped</span> dashed: no completion. "
        "Hover or click an op for its state before and after.</p>",
    ]
    if len(parts) > len(shown):
        out.append(f"<p>{len(parts) - len(shown)} more partitions not drawn.</p>")
    for pi, p in enumerate(shown):
        d = data["parts"][pi]
        out.append(f"<h2>{html.escape(d['key'])}: {html.escape(p.verdict)}</h2>")
        ce = p.counterexample
        if d["truncated"]:
            out.append(f"<p>{d['truncated']} later ops not drawn.</p>")
        title = "Linearisation" if ce is None else "Longest linearizable prefix"
        rows = "".join(
            f"<tr id='r{pi}_{s['n']}'><td>{s['n']}</td><td>{html.escape(s['t'])}</td>"
            f"<td>{html.escape(s['b'])}</td><td>{html.escape(s['a'])}</td></tr>"
            for s in d["lin"]
        )
        prefix = (
            f"<details><summary>{title} ({len(d['lin'])} ops)</summary><table>"
            f"<tr><th>#</th><th>op</th><th>state before</th><th>state after</th></tr>"
            f"{rows}</table></details>"
        )
        if ce is None:
            out.append(f"<div id='p{pi}'></div><pre id='sel{pi}'></pre>{prefix}")
            continue
        if ce.summary:
            out.append(f"<p class='why'><b>What went wrong:</b> {html.escape(ce.summary)}</p>")
        proof = "1-minimal" if ce.window_minimal else "not proven minimal"
        out.append(
            f"<p>Cannot linearise <b>{html.escape(ce.blocked.describe())}</b>"
            f"{_line(ce.blocked.line)}. State before it: "
            f"<code class='state'>{html.escape(_short(ce.prefix_state))}</code>; no state the "
            f"history can reach lets the model do it. The failing window "
            f"({len(ce.window)} ops, {proof}), zoomed: these ops cannot be linearised "
            "together even if every other op is indeterminate (took effect at any time after "
            "its invocation, or never).</p>"
            f"<div id='w{pi}' class='zoom'></div><pre id='sel{pi}'></pre><ul>"
            + "".join(f"<li>{html.escape(o.describe())}{_line(o.line)}</li>" for o in ce.window)
            + "</ul>"
            + prefix
            + f"<details><summary>Whole history of this key ({len(d['ops'])} ops drawn)"
            f"</summary><div id='p{pi}'></div></details>"
        )
    out.append("<div id='tip'></div>")
    out.append(f"<script id='data' type='application/json'>{payload}</script>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out)


def write_html(result: CheckResult, path: str | Path, **kwargs: Any) -> None:
    Path(path).write_text(render_html(result, **kwargs), encoding="utf-8")
