package proc

import (
	"os"
	"reflect"
	"testing"
)

func TestFS(t *testing.T) {
	if New("").Root() != "/proc" || (FS{}).Root() != "/proc" {
		t.Error("the default root is not /proc")
	}
	fs := New("testdata/children")
	if p := fs.Path(10, "task", "11", "children"); p != "testdata/children/10/task/11/children" {
		t.Errorf("Path = %q", p)
	}
	if pids, err := fs.Pids(); err != nil || !reflect.DeepEqual(pids, []int{10, 12, 14, 15, 99}) {
		t.Errorf("Pids = %v, %v", pids, err)
	}
	if l, err := fs.NSLink(10, "pid"); err != nil || l != "pid:[4026532200]" {
		t.Errorf("NSLink = %q, %v", l, err)
	}
	if l, err := fs.SelfNS("pid"); err != nil || l != "pid:[4026531836]" {
		t.Errorf("SelfNS = %q, %v", l, err)
	}
	if fs.Live() {
		t.Error("a fixture tree is live")
	}
	if _, err := os.Stat("/proc/self/status"); err == nil && !New("/proc").Live() {
		t.Error("/proc is not live")
	}
}
