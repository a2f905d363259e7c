package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are walletd's Prometheus metrics, in a registry of their own so
// that two servers in one process (as in the tests) do not collide.
type metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	entriesCreated prometheus.Counter
	notEnoughFunds prometheus.Counter
	itemsUsed      prometheus.Counter
	authFailures   *prometheus.CounterVec
	connections    prometheus.Gauge
	idleClosed     prometheus.Counter
	changeStreams  prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walletd_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code; code is aborted, write_timeout or client_gone for an answer that did not reach the client whole.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "walletd_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		entriesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walletd_entries_created_total",
			Help: "Entries written by POST /api/v1/entry.",
		}),
		notEnoughFunds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walletd_not_enough_funds_total",
			Help: "Entries refused because the user could not afford them (402).",
		}),
		itemsUsed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walletd_items_used_total",
			Help: "Items marked used by POST /api/v1/entry/{entry_id}/inventory/use.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walletd_auth_failures_total",
			Help: "Requests refused by authentication, by reason.",
		}, []string{"reason"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walletd_http_connections",
			Help: "Open connections of the API listener, at most -max-conns (plus one waiting for room).",
		}),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walletd_http_idle_connections_closed_total",
			Help: "Idle keep-alive connections closed to make room for a new one under -max-conns.",
		}),
		changeStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walletd_change_streams",
			Help: "Open GET /api/v1/changes streams.",
		}),
	}
	m.reg.MustRegister(
		m.requests, m.duration, m.entriesCreated, m.notEnoughFunds, m.itemsUsed, m.authFailures,
		m.connections, m.idleClosed, m.changeStreams,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return mux
}

// observe records one served request; code is its status code, or its
// outcome (see outcomeAborted) if its answer did not reach the client
// whole.
func (m *metrics) observe(route, method, code string, d time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, code).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// methodLabel bounds the method label: clients choose the method, and an
// unbounded label would let them grow the registry without end.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
