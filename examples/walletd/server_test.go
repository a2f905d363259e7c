package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGracefulShutdown: when serve's context ends, a request in flight
// finishes with its answer, new connections are refused, and serve
// returns only after the request is done.
func TestGracefulShutdown(t *testing.T) {
	store := newFaultyStore()
	env := newTestEnv(t, envOptions{store: store}) // for the authority and its client
	c := env.newAuthority("a")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- env.srv.serve(ctx, ln, mln) }()
	c.apiURL = "http://" + ln.Addr().String() + "/api/v1"

	require.Equal(t, http.StatusOK, c.createEntry("u", 3, "r", nil).status)
	entered, release := store.blockNextView()
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // on failure too: the server's Close waits for the blocked call
	answered := make(chan resp, 1)
	go func() { answered <- c.getWallets(nil, nil) }()
	<-entered // the request is inside the ledger

	cancel()
	// The listeners close at once ...
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "API listener closed")
	// ... but serve waits for the request in flight.
	select {
	case err := <-served:
		t.Fatalf("serve returned with a request in flight: %v", err)
	default:
	}
	unblock()
	r := <-answered
	assert.Equal(t, map[string]int64{"u": 3}, requireWallets(t, r))
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(shutdownTimeout):
		t.Fatal("serve did not return after the last request finished")
	}
	// The ledger stays open until Close.
	require.NoError(t, env.srv.ledger.Health(context.Background()))
	require.NoError(t, env.srv.Close())
}
