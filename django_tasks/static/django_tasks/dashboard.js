/* The django_tasks dashboard: draws the data the page embeds, then asks the admin's JSON
   endpoint for new data every few seconds. Charts are uPlot (static/django_tasks/uplot). */
(function () {
  "use strict";
  var root = document.getElementById("tasks-dashboard");
  if (!root) { return; }
  var COLOURS = {SUCCESS: "#1a7f37", FAILURE: "#cf222e", RETRY: "#bf8700", REVOKED: "#57606a"};
  var OTHER = "#8250df";
  var windowName = root.dataset.window;
  var charts = {};
  var busy = false;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function number(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString(); }

  // A count the broker cannot know (in flight on RabbitMQ) is null.
  function known(n) { return n === null || n === undefined ? "not known" : number(n); }

  function percent(rate) {
    return rate === null || rate === undefined ? "-" : (rate * 100).toFixed(rate < 0.1 ? 2 : 1) + " %";
  }

  function seconds(s) {
    if (s === null || s === undefined) { return "-"; }
    if (s < 0.001) { return (s * 1000).toFixed(2) + " ms"; }
    if (s < 1) { return (s * 1000).toFixed(0) + " ms"; }
    if (s < 60) { return s.toFixed(2) + " s"; }
    var m = Math.floor(s / 60);
    return m + " min " + Math.round(s - m * 60) + " s";
  }

  function clockTime(epoch) { return new Date(epoch * 1000).toLocaleTimeString(); }

  function resultLink(id) {
    var a = el("a", id.length > 13 ? id.slice(0, 8) + "…" : id, "td-id");
    a.href = root.dataset.resultsUrl + "?q=" + encodeURIComponent(id);
    a.title = id;
    return a;
  }

  function fill(tableId, rows, empty, build) {
    var body = document.querySelector("#" + tableId + " tbody");
    var columns = document.querySelectorAll("#" + tableId + " thead th").length;
    body.replaceChildren();
    if (!rows.length) {
      var tr = el("tr"), td = el("td", empty, "td-empty");
      td.colSpan = columns;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (row) {
      var tr = el("tr");
      build(row).forEach(function (cell) {
        if (cell instanceof Node) {
          if (cell.tagName !== "TD") { var td = el("td"); td.appendChild(cell); cell = td; }
          tr.appendChild(cell);
        } else { tr.appendChild(el("td", cell)); }
      });
      body.appendChild(tr);
    });
  }

  function num(text) { return el("td", text, "td-num"); }

  function chartWidth(node) { return Math.max(300, node.clientWidth || node.parentNode.clientWidth - 20); }

  function draw(id, block, kind) {
    var node = document.getElementById(id);
    if (!block || !window.uPlot) { return; }
    var names, data, total = 0;
    if (kind === "rate") {
      names = ["failure rate"];
      data = [block.t, block.failure_rate.map(function (r) { return r === null ? null : r * 100; })];
      total = block.failure_rate.reduce(function (a, r) { return a + (r || 0); }, 0);
    } else {
      names = Object.keys(block.series);
      data = [block.t].concat(names.map(function (s) { return block.series[s]; }));
      names.forEach(function (s) { total += block.series[s].reduce(function (a, b) { return a + b; }, 0); });
    }
    node.dataset.total = String(total);
    var key = names.join(",");
    var chart = charts[id];
    if (chart && chart.key === key) {
      chart.plot.setData(data);
      return;
    }
    if (chart) { chart.plot.destroy(); }
    var series = [{}].concat(names.map(function (s) {
      var colour = kind === "rate" ? COLOURS.FAILURE : (COLOURS[s] || OTHER);
      return {label: s, stroke: colour, width: 1.5, fill: kind === "rate" ? colour + "22" : undefined,
              points: {show: kind === "rate", size: 4}, spanGaps: kind !== "rate",
              value: function (u, v) { return v === null ? "-" : kind === "rate" ? v.toFixed(1) + " %" : v; }};
    }));
    var opts = {
      width: chartWidth(node), height: 200, series: series,
      scales: {y: {range: function (u, lo, hi) { return [0, kind === "rate" ? 100 : Math.max(5, hi * 1.1)]; }}},
      axes: [{}, {size: 50, values: function (u, vals) {
        return vals.map(function (v) { return kind === "rate" ? v + " %" : v; });
      }}],
      cursor: {drag: {x: false, y: false}},
    };
    node.replaceChildren();
    charts[id] = {key: key, plot: new window.uPlot(opts, data, node)};
  }

  function render(data) {
    document.getElementById("td-uncounted").hidden = data.counted;
    var totals = data.totals || {};
    var all = Object.keys(totals).reduce(function (a, s) { return a + totals[s]; }, 0);
    document.getElementById("td-total").textContent = data.counted ? number(all) : "-";
    document.getElementById("td-success").textContent = number(totals.SUCCESS);
    document.getElementById("td-failure").textContent = number(totals.FAILURE);
    document.getElementById("td-retry").textContent = number(totals.RETRY);
    document.getElementById("td-failure-rate").textContent = percent(data.failure_rate);
    document.getElementById("td-workers").textContent = number(data.workers_online);
    var depths = data.queues.depths || {};
    var waiting = Object.keys(depths).reduce(function (a, q) { return a + depths[q]; }, 0);
    document.getElementById("td-waiting").textContent = data.queues.error ? "?" : number(waiting);

    draw("chart-hour", data.hour, "count");
    draw("chart-day", data.day, "count");
    draw("chart-failure", windowName === "day" ? data.day : data.hour, "rate");

    fill("td-tasks", data.tasks, "No task finished in this window.", function (r) {
      return [el("td", r.task_name), num(number(r.total)), num(number(r.success)),
              num(number(r.failure)), num(number(r.retry)), num(percent(r.failure_rate)),
              num(seconds(r.mean)), num(seconds(r.p50)), num(seconds(r.p95)),
              num(seconds(r.p99)), num(seconds(r.max))];
    });
    fill("td-slowest", data.slowest, "No runtimes in this window.", function (r) {
      return [el("td", r.task_name), r.task_id ? resultLink(r.task_id) : "-", r.state,
              num(seconds(r.runtime)), clockTime(r.minute)];
    });
    fill("td-failures", data.failures, "No failures in this window.", function (r) {
      var error = el("td", "", "td-wrap");
      if (r.last_task_id) { error.appendChild(resultLink(r.last_task_id)); error.appendChild(document.createTextNode(" ")); }
      error.appendChild(document.createTextNode(r.last_error || ""));
      return [el("td", r.task_name), num(number(r.failures)), num(percent(r.failure_rate)), error];
    });
    document.getElementById("td-broker").textContent = data.queues.broker +
      (data.queues.error ? " (cannot count: " + data.queues.error + ")" : "");
    var counts = data.queues.counts || {};
    fill("td-queues", Object.keys(counts).map(function (q) { return [q, counts[q]]; }),
         "No queue known.", function (r) {
           return [el("td", r[0]), num(number(r[1].ready)), num(known(r[1].delayed)),
                   num(known(r[1].in_flight))];
         });
    fill("td-workerlist", data.workers, "No worker has started yet.", function (w) {
      return [el("td", w.hostname), w.kind, w.pool, num(w.concurrency), el("td", w.queues, "td-wrap"),
              clockTime(w.last_heartbeat),
              el("td", w.alive ? "online" : "gone", w.alive ? "td-alive" : "td-dead")];
    });
    root.dataset.refreshes = String(Number(root.dataset.refreshes) + 1);
    document.getElementById("td-status").textContent = "Refreshed at " + clockTime(data.now) +
      ", every " + root.dataset.refresh + " s";
  }

  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(root.dataset.dataUrl + "?window=" + encodeURIComponent(windowName),
          {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(render)
      .catch(function (error) {
        document.getElementById("td-status").textContent = "Cannot refresh: " + error.message;
      })
      .finally(function () { busy = false; });
  }

  var last = JSON.parse(document.getElementById("td-initial").textContent);
  render(last);
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      var node = document.getElementById(id);
      charts[id].plot.setSize({width: chartWidth(node), height: 200});
    });
  });
  setInterval(refresh, Number(root.dataset.refresh) * 1000);
})();
