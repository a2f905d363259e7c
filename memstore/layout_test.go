package memstore

import (
	"testing"
	"unsafe"
)

// The package doc promises these sizes, and the memory benchmarks rest
// on them: a new field in one of them moves it to a larger size class.
func TestRecordSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"rec", unsafe.Sizeof(rec{}), 72},
		{"recExt", unsafe.Sizeof(recExt{}), 48},
		{"recMore", unsafe.Sizeof(recMore{}), 64},
		{"item", unsafe.Sizeof(item{}), 48},
		{"use", unsafe.Sizeof(use{}), 32},
		{"change", unsafe.Sizeof(change{}), 24},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %d bytes, want %d", tc.name, tc.got, tc.want)
		}
	}
}
