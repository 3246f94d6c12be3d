package proc

import (
	"reflect"
	"testing"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Status
		wantErr bool
	}{
		{name: "init of a pid namespace, session outside",
			in: "Name:\tsh\nState:\tS (sleeping)\nTgid:\t4242\nPPid:\t4200\nTracerPid:\t0\n" +
				"NStgid:\t4242\t1\nNSpid:\t4242\t1\nNSpgid:\t4200\t0\nNSsid:\t812\t0\nThreads:\t1\n",
			want: Status{Name: "sh", State: "S (sleeping)", Tgid: 4242, PPid: 4200,
				NStgid: []int{4242, 1}, NSpid: []int{4242, 1}, NSpgid: []int{4200, 0}, NSsid: []int{812, 0}, HasNS: true}},
		{name: "two nested namespaces, traced",
			in:   "Name:\tsleep\nTracerPid:\t77\nNStgid:\t9\t5\t2\nNSpid:\t9\t5\t2\nNSpgid:\t8\t4\t1\nNSsid:\t8\t4\t1\n",
			want: Status{Name: "sleep", TracerPid: 77, NStgid: []int{9, 5, 2}, NSpid: []int{9, 5, 2}, NSpgid: []int{8, 4, 1}, NSsid: []int{8, 4, 1}, HasNS: true}},
		{name: "kernel before 4.1 has no NS lines",
			in:   "Name:\tsh\nTgid:\t1\nPPid:\t0\n",
			want: Status{Name: "sh", Tgid: 1}},
		{name: "NSpid without NSsid", in: "NSpid:\t5\t1\nNSpgid:\t5\t1\n", wantErr: true},
		{name: "garbage in NSsid", in: "NSpid:\t5\nNSpgid:\t5\nNSsid:\tx\n", wantErr: true},
		{name: "garbage TracerPid", in: "TracerPid:\tnone\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if Last(nil) != -1 || Last([]int{3, 0}) != 0 {
		t.Error("Last")
	}
}

// TestParseStatusCredentials reads the lines the privilege check needs.
func TestParseStatusCredentials(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		uid     []int
		capEff  uint64
		hasCaps bool
		wantErr bool
	}{
		{name: "root", in: "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n", uid: []int{0, 0, 0, 0}, capEff: 0x1ffffffffff, hasCaps: true},
		{name: "setuid", in: "Uid:\t1000\t0\t0\t0\nCapEff:\t0000000000000000\n", uid: []int{1000, 0, 0, 0}, hasCaps: true},
		{name: "no lines", in: "Name:\tx\n"},
		{name: "garbage CapEff", in: "CapEff:\tzz\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (!reflect.DeepEqual(got.Uid, tc.uid) || got.CapEff != tc.capEff || got.HasCapEff != tc.hasCaps) {
				t.Errorf("Uid %v CapEff %x (%v), want %v %x (%v)", got.Uid, got.CapEff, got.HasCapEff, tc.uid, tc.capEff, tc.hasCaps)
			}
		})
	}
}

func TestReadStatus(t *testing.T) {
	fs := New("testdata/children")
	st, err := fs.ReadStatus(12)
	if err != nil || st.Name != "sleep" || st.PPid != 10 || Last(st.NSpid) != 3 || Last(st.NSsid) != 1 {
		t.Errorf("status of 12: %+v, %v", st, err)
	}
	st, err = fs.ReadTaskStatus(10, 11)
	if err != nil || st.Tgid != 10 || Last(st.NSpid) != 2 {
		t.Errorf("status of thread 11: %+v, %v", st, err)
	}
	if st, err := fs.ReadSelfStatus(); err != nil || st.Name != "init" {
		t.Errorf("status of self (99): %+v, %v", st, err)
	}
	if _, err := fs.ReadStatus(13); !Gone(err) {
		t.Errorf("status of the exited 13: %v", err)
	}
}
