//go:build unix

package main

import "syscall"

// openNoFollow are the flags readAuthorityFile opens with besides
// O_RDONLY: no symbolic link is followed (the open fails with ELOOP), and
// a FIFO does not block the open.
const openNoFollow = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
