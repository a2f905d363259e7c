package pgstore_test

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// TestTCPSettings reads back the socket options of a store's connection:
// keepalives and TCP_USER_TIMEOUT, by default and as libpq's connection
// parameters set them.
func TestTCPSettings(t *testing.T) {
	dbURL(t)
	const tcpUserTimeout = 0x12 // not in package syscall
	type sockopts struct{ keepAlive, idle, interval, count, userTimeoutMS int }
	for _, tc := range []struct {
		name   string
		params map[string]string
		want   sockopts
	}{
		{name: "defaults", want: sockopts{1,
			int(pgstore.DefaultKeepAliveIdle.Seconds()), int(pgstore.DefaultKeepAliveInterval.Seconds()),
			pgstore.DefaultKeepAliveCount, int(pgstore.DefaultTCPUserTimeout.Milliseconds())}},
		{name: "libpq parameters", params: map[string]string{
			"keepalives_idle": "7", "keepalives_interval": "2", "keepalives_count": "4", "tcp_user_timeout": "1234",
		}, want: sockopts{1, 7, 2, 4, 1234}},
		{name: "off", params: map[string]string{"keepalives": "0", "tcp_user_timeout": "0"}, want: sockopts{keepAlive: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := urlWith(t, tc.params)
			if strings.HasPrefix(u.Hostname(), "/") || u.Query().Has("host") {
				t.Skip("LEDGER_PG_URL does not name a TCP host")
			}
			s, err := pgstore.Open(context.Background(), u.String(), pgstore.WithSchema(freshSchema(t)))
			require.NoError(t, err)
			defer s.Close()
			var got sockopts
			err = pgstore.WithNetConn(context.Background(), s, func(c net.Conn) error {
				raw, err := c.(*net.TCPConn).SyscallConn()
				if err != nil {
					return err
				}
				return raw.Control(func(fd uintptr) {
					get := func(level, opt int) int {
						v, err := syscall.GetsockoptInt(int(fd), level, opt)
						require.NoError(t, err)
						return v
					}
					got.keepAlive = get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
					got.userTimeoutMS = get(syscall.IPPROTO_TCP, tcpUserTimeout)
					if got.keepAlive != 0 {
						got.idle = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
						got.interval = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
						got.count = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
					}
				})
			})
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("bad value", func(t *testing.T) {
		u := urlWith(t, map[string]string{"keepalives_idle": "soon"})
		_, err := pgstore.Open(context.Background(), u.String(), pgstore.WithSchema(freshSchema(t)))
		require.ErrorIs(t, err, ledger.ErrInvalid)
	})
}
