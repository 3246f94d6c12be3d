package proc

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestWalk(t *testing.T) {
	tests := []struct {
		name     string
		dir      string
		root     int
		want     []int // read, in order
		vanished []int
		wantErr  string
	}{
		// 13 is a child of thread 11 but has no directory; 15 was read
		// but its children could not be listed.
		{name: "children files", dir: "children", root: 10, want: []int{10, 12, 14, 15}, vanished: []int{13, 15}},
		{name: "a subtree", dir: "children", root: 14, want: []int{14, 15}, vanished: []int{15}},
		{name: "no children files: every process's parent", dir: "parents", root: 20, want: []int{20, 21, 22}},
		{name: "a leaf without children files", dir: "parents", root: 22, want: []int{22}},
		{name: "missing root", dir: "children", root: 4242, wantErr: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := New("testdata/" + tc.dir)
			var got []int
			vanished, err := fs.Walk(tc.root, func(pid int) error {
				if _, err := fs.ReadStatus(pid); err != nil {
					return err
				}
				got = append(got, pid)
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !Gone(err) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(vanished, tc.vanished) {
				t.Errorf("read %v, vanished %v; want %v, %v", got, vanished, tc.want, tc.vanished)
			}
		})
	}
}

func TestWalkReadError(t *testing.T) {
	fs := New("testdata/children")
	bad := errors.New("permission denied")
	_, err := fs.Walk(10, func(pid int) error {
		if pid == 12 {
			return bad
		}
		return nil
	})
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), "read process 12") {
		t.Errorf("err = %v", err)
	}
}

func TestChildren(t *testing.T) {
	tests := []struct {
		dir     string
		pid     int
		want    []int
		wantErr error
	}{
		{dir: "children", pid: 10, want: []int{12, 13}},
		{dir: "children", pid: 99, want: nil},
		{dir: "children", pid: 13, wantErr: os.ErrNotExist},
		{dir: "parents", pid: 20, wantErr: ErrNoChildren},
	}
	for _, tc := range tests {
		got, err := New("testdata/" + tc.dir).Children(tc.pid)
		if !errors.Is(err, tc.wantErr) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Children(%d) = %v, %v; want %v, %v", tc.dir, tc.pid, got, err, tc.want, tc.wantErr)
		}
	}
	if tids, err := New("testdata/children").Tasks(10); err != nil || !reflect.DeepEqual(tids, []int{10, 11}) {
		t.Errorf("Tasks(10) = %v, %v", tids, err)
	}
}

func TestParents(t *testing.T) {
	got, err := New("testdata/parents").Parents()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]int{1: {20, 23}, 20: {21}, 21: {22}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parents = %v, want %v", got, want)
	}
	if _, err := New("testdata/none").Parents(); err == nil || !strings.Contains(err.Error(), "list processes in testdata/none") {
		t.Errorf("no procfs: %v", err)
	}
}

func TestParseChildren(t *testing.T) {
	for in, want := range map[string][]int{"": {}, "12": {12}, "13 12 ": {13, 12}} {
		if got, err := ParseChildren([]byte(in)); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseChildren(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseChildren([]byte("1 x")); err == nil {
		t.Error("garbage: no error")
	}
}
