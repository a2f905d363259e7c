package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where the comparison ran: numbers from two machines
// do not compare, ratios from one run do.
type machine struct {
	cpu        string
	cores      int
	gomaxprocs int
	goVersion  string
	osArch     string
	date       time.Time
	tempDir    string
	fs         string  // file system type and device of tempDir
	fsyncs     float64 // write-and-fsync rounds per second in tempDir
	library    string  // the library's commit, if it is in a git work tree
}

func describeMachine(tempDir string, probe time.Duration) machine {
	m := machine{
		cpu:        cpuModel(),
		cores:      runtime.NumCPU(),
		gomaxprocs: runtime.GOMAXPROCS(0),
		goVersion:  runtime.Version(),
		osArch:     runtime.GOOS + "/" + runtime.GOARCH,
		date:       time.Now().UTC(),
		tempDir:    tempDir,
		fs:         fileSystem(tempDir),
	}
	m.fsyncs, _ = fsyncRate(tempDir, probe)
	m.library = libraryCommit()
	return m
}

// libraryCommit describes the commit of the library this module
// replaces with "..", "-dirty" when the work tree has changes, or
// returns "" when git cannot tell.
func libraryCommit() string {
	out, err := exec.Command("git", "-C", "..", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or the
// architecture where there is none.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// fileSystem returns the type and device of the file system holding
// path, from the longest matching mount point in /proc/mounts.
func fileSystem(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	best, found := "", "unknown"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := unescapeMount(f[1])
		under := path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")
		if under && len(mp) >= len(best) {
			best, found = mp, fmt.Sprintf("%s (%s on %s)", f[2], f[0], mp)
		}
	}
	return found
}

// unescapeMount undoes the octal escapes (\040 for a space) of
// /proc/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fsyncRate appends 100 bytes to a file in dir and fsyncs it, over and
// over for d, and returns the rounds per second: the most a durable
// store that syncs once per write can do.
func fsyncRate(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "ledger-bench-fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 100)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
