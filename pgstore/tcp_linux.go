package pgstore

import (
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option (see tcp(7)),
// which package syscall does not name.
const tcpUserTimeout = 0x12

// setTCPUserTimeout sets how long data sent on the socket may stay
// unacknowledged before the kernel drops the connection.
func setTCPUserTimeout(fd uintptr, d time.Duration) error {
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
}
