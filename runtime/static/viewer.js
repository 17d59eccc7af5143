// headpose live view: the MJPEG video, /events records plotted per track, the stats events.
"use strict";
(function () {
  const WINDOW_S = 10;                       // seconds of history in the plot
  const AXES = ["yaw", "pitch", "roll"];
  const RANGE = 90;                          // degrees shown above and below 0
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  const $ = (id) => document.getElementById(id);

  const series = new Map();                  // track id -> [{t, yaw, pitch, roll}], oldest first
  const view = { series: series, drawn: {}, records: 0, last: null };
  window.headposeView = view;                // read by tests/browser and handy in the console

  const PALETTE = ["#4e9fef", "#f28e2b", "#e15759", "#76d7c4", "#59c14f", "#edc948", "#c07cf0", "#ff9da7",
                   "#c3a07a", "#bab0ac"];   // one colour per track id (Tableau 10, brightened for a dark page)
  const colour = (id) => PALETTE[(id - 1) % PALETTE.length];
  const now = () => performance.now() / 1000;

  $("stream").src = "stream.mjpg" + query;
  $("stream").onerror = () => { $("stream").alt = "no video (see /healthz; OpenCV or Pillow encodes it)"; };

  fetch("healthz" + query).then((r) => r.json()).then((h) => { $("source").textContent = h.source; })
    .catch(() => {});

  function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = cls; }

  const events = new EventSource("events" + query);
  events.onopen = () => setStatus("live", "live");
  events.onerror = () => setStatus("disconnected (the run ended or the device is unreachable): retrying", "down");
  events.onmessage = (e) => {
    const r = JSON.parse(e.data);
    const t = now();
    view.records += 1;
    view.last = r;
    for (const f of r.faces) {
      if (!series.has(f.track_id)) series.set(f.track_id, []);
      series.get(f.track_id).push({ t: t, yaw: f.yaw, pitch: f.pitch, roll: f.roll });
    }
    $("faces").textContent = r.faces.length;
    $("frame").textContent = r.frame;
  };
  events.addEventListener("stats", (e) => {
    const s = JSON.parse(e.data);
    $("fps").textContent = s.fps.toFixed(1);
    const stages = s.stages_ms || {};
    $("ms").textContent = stages.total !== undefined ? stages.total.toFixed(1) : "–";
    const rows = Object.keys(stages).filter((k) => k !== "total")
      .map((k) => "<tr><td>" + k + "</td><td class=ms>" + stages[k].toFixed(2) + " ms</td></tr>");
    $("stages").innerHTML = rows.join("");
  });

  function draw() {
    const c = $("plot"), g = c.getContext("2d");
    const w = c.width, h = c.height, panel = h / AXES.length, left = 44, t1 = now(), t0 = t1 - WINDOW_S;
    g.clearRect(0, 0, w, h);
    g.font = "12px system-ui, sans-serif";
    for (const [id, pts] of series) {        // forget what scrolled out of the window
      while (pts.length && pts[0].t < t0) pts.shift();
      if (!pts.length) series.delete(id);
    }
    const drawn = {};
    AXES.forEach((axis, a) => {
      const top = a * panel, mid = top + panel / 2, scale = (panel / 2 - 14) / RANGE;
      const y = (deg) => mid - Math.max(-RANGE, Math.min(RANGE, deg)) * scale;
      const x = (t) => left + (t - t0) / WINDOW_S * (w - left - 4);
      g.strokeStyle = "#333"; g.fillStyle = "#888"; g.lineWidth = 1;
      for (const d of [-RANGE, -45, 0, 45, RANGE]) {
        g.beginPath(); g.moveTo(left, y(d)); g.lineTo(w, y(d)); g.stroke();
        g.fillText((d > 0 ? "+" : "") + d, 4, y(d) + 4);
      }
      g.fillStyle = "#ccc"; g.fillText(axis, left + 4, top + 14);
      for (const [id, pts] of series) {
        g.strokeStyle = g.fillStyle = colour(id); g.lineWidth = 2;
        g.beginPath();
        pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[axis])) : g.moveTo(x(p.t), y(p[axis]))));
        g.stroke();
        const last = pts[pts.length - 1];
        g.beginPath(); g.arc(x(last.t), y(last[axis]), 3, 0, 2 * Math.PI); g.fill();
        drawn[id] = (drawn[id] || 0) + pts.length;
      }
    });
    view.drawn = drawn;
    $("legend").innerHTML = [...series.keys()].sort((p, q) => p - q).map((id) => {
      const p = series.get(id)[series.get(id).length - 1];
      const deg = (v) => String(Math.round(v) || 0);
      return "<span><i style=\"background:" + colour(id) + "\"></i>#" + id + " yaw " + deg(p.yaw) +
        " pitch " + deg(p.pitch) + " roll " + deg(p.roll) + "</span>";
    }).join("");
  }
  view.draw = draw;
  setInterval(draw, 100);
})();
