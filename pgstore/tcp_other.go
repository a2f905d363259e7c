//go:build !linux

package pgstore

import "time"

// setTCPUserTimeout does nothing: TCP_USER_TIMEOUT is Linux's.
func setTCPUserTimeout(uintptr, time.Duration) error { return nil }
