package pgstore

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walletledger/ledger"
)

// How a Store finds out that the database stopped answering, unless the
// connection string or [WithPoolConfig] says otherwise. See "Dead
// connections" in the package documentation.
const (
	// DefaultKeepAliveIdle, DefaultKeepAliveInterval and
	// DefaultKeepAliveCount set TCP keepalives on every connection: after
	// DefaultKeepAliveIdle without traffic a probe is sent every
	// DefaultKeepAliveInterval, and the connection is dropped after
	// DefaultKeepAliveCount unanswered probes (30s in all).
	DefaultKeepAliveIdle     = 15 * time.Second
	DefaultKeepAliveInterval = 5 * time.Second
	DefaultKeepAliveCount    = 3

	// DefaultTCPUserTimeout is how long data sent on a connection may
	// stay unacknowledged before the connection is dropped (Linux's
	// TCP_USER_TIMEOUT; elsewhere it has no effect).
	DefaultTCPUserTimeout = 30 * time.Second

	// DefaultPingTimeout is how long the pool waits for a connection that
	// has been idle (for a second or more) to answer the ping it sends
	// before handing it out; a connection that does not answer is
	// dropped and another one used.
	DefaultPingTimeout = 5 * time.Second
)

// tcpSettings are the TCP settings of a Store's connections.
type tcpSettings struct {
	keepAlive   net.KeepAliveConfig
	userTimeout time.Duration // 0: the system's default
}

// libpqTCPParams are libpq's connection parameters for keepalives and
// TCP_USER_TIMEOUT. pgx does not know them and would send them to the
// server as run-time parameters, which the server refuses; Open reads
// them as libpq does instead.
var libpqTCPParams = [...]string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}

// configureConns sets the defaults by which a Store bounds its waits on
// the server: TCP keepalives and TCP_USER_TIMEOUT on the dialer
// (overridden by libpq's parameters in the connection string, which it
// removes from the run-time parameters), a deadline on the connection
// as soon as a context ends, and a timeout on the pool's liveness pings.
func configureConns(pc *pgxpool.Config) error {
	ts := tcpSettings{
		keepAlive: net.KeepAliveConfig{
			Enable:   true,
			Idle:     DefaultKeepAliveIdle,
			Interval: DefaultKeepAliveInterval,
			Count:    DefaultKeepAliveCount,
		},
		userTimeout: DefaultTCPUserTimeout,
	}
	params := pc.ConnConfig.RuntimeParams
	for _, k := range libpqTCPParams {
		v, ok := params[k]
		if !ok {
			continue
		}
		delete(params, k)
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("pgstore: open: connection parameter %s=%q: want a whole number >= 0: %w", k, v, ledger.ErrInvalid)
		}
		switch k {
		case "keepalives":
			ts.keepAlive.Enable = n != 0
		case "keepalives_idle":
			ts.keepAlive.Idle = time.Duration(n) * time.Second
		case "keepalives_interval":
			ts.keepAlive.Interval = time.Duration(n) * time.Second
		case "keepalives_count":
			ts.keepAlive.Count = n
		case "tcp_user_timeout":
			ts.userTimeout = time.Duration(n) * time.Millisecond
		}
	}
	d := &net.Dialer{
		Timeout:         pc.ConnConfig.ConnectTimeout,
		KeepAliveConfig: ts.keepAlive,
		Control: func(network, _ string, c syscall.RawConn) error {
			if ts.userTimeout == 0 || network != "tcp" && network != "tcp4" && network != "tcp6" {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = setTCPUserTimeout(fd, ts.userTimeout) })
			if err != nil {
				return err
			}
			return serr
		},
	}
	if !ts.keepAlive.Enable {
		d.KeepAlive = -1
	}
	pc.ConnConfig.DialFunc = d.DialContext
	// The moment a context ends, the connection's deadline passes: a
	// read or write in flight fails at once and pgx closes the
	// connection, however the server behaves. (pgx's default today;
	// set so that it stays the store's.)
	pc.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	pc.PingTimeout = DefaultPingTimeout
	return nil
}
