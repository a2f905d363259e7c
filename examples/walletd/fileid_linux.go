package main

import (
	"os"
	"syscall"
)

// identityOf is what tells one version of a file from another: the
// device and inode (a file replaced by rename, as create-authority and
// writeFileAtomic write, has a new inode), size, and modification and
// change times.
func identityOf(fi os.FileInfo) fileIdentity {
	id := fileIdentity{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
		id.ctime = st.Ctim.Nano()
	}
	return id
}
