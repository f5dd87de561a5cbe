// The overview's consumer-lag chart (a file, not inline: the console's CSP allows no inline script).
(function () {
  if (typeof Chart === "undefined") return;
  const chart = new Chart(document.getElementById("lag-chart"), {
    type: "line",
    data: {labels: [], datasets: [{label: "lag (records)", data: [], borderColor: "#2563eb", backgroundColor: "rgba(37,99,235,.15)", fill: true, pointRadius: 0, tension: .2, spanGaps: false}]},
    options: {animation: false, maintainAspectRatio: false, scales: {y: {beginAtZero: true, ticks: {precision: 0}}}}
  });
  async function refresh() {
    try {
      const history = await (await fetch("/api/lag", {credentials: "same-origin"})).json();
      chart.data.labels = history.map(h => new Date(h.t * 1000).toLocaleTimeString());
      chart.data.datasets[0].data = history.map(h => h.lag);
      chart.update();
    } catch (e) { /* the next refresh will tell */ }
  }
  refresh();
  setInterval(refresh, 5000);
})();
