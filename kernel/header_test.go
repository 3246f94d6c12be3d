package kernel

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestImageFormat(t *testing.T) {
	at := func(off int, magic string) []byte {
		b := make([]byte, imageHeaderLen)
		copy(b[off:], magic)
		return b
	}
	zboot := at(0, "MZ")
	copy(zboot[4:], "zimg")
	tests := []struct {
		name string
		hdr  []byte
		want string
	}{
		{"bzImage", fakeFindBzImage("6.1.0 #1"), formatBzImage},
		{"bzImage cut after the version field", fakeFindBzImage("6.1.0 #1")[:bootVersion], formatBzImage},
		{"vmlinux", fakeFindVmlinux("6.1.0")[:imageHeaderLen], formatELF},
		{"arm64 Image", at(0x38, "ARM\x64"), formatARM64},
		{"riscv Image", at(0x30, "RSC\x05"), formatRISCV},
		{"EFI zboot", zboot, formatZboot},
		{"text", []byte(strings.Repeat("CONFIG_X=y\n", 100)), ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		if got := imageFormat(tt.hdr); got != tt.want {
			t.Errorf("%s: imageFormat = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestBzHeader(t *testing.T) {
	payload := []byte("\x1f\x8b\x08 a compressed kernel")
	old := fakeFindBzImage("6.1.0 #1")
	binary.LittleEndian.PutUint16(old[bootVersion:], 0x0201)
	tests := []struct {
		name        string
		data        []byte
		wantRelease string // or the error's text
		wantPayload []byte
	}{
		{name: "protocol 2.15 with a payload", data: fakeBzImage(payload), wantRelease: "carries no kernel_version", wantPayload: payload},
		{name: "protocol 2.15 with a version", data: fakeFindBzImage("6.12.7-kata (b@h) #1"), wantRelease: "6.12.7-kata"},
		{name: "protocol 2.01: a version, no payload field", data: old, wantRelease: "6.1.0"},
		{name: "header cut short", data: fakeFindBzImage("6.1.0 #1")[:0x208], wantRelease: "cut short"},
		{name: "not a release", data: fakeFindBzImage("linux"), wantRelease: `"linux" is not a release`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := parseBzHeader(tt.data)
			if !ok {
				t.Fatal("not a bzImage")
			}
			got, err := h.release(bytes.NewReader(tt.data))
			if err != nil {
				got = err.Error()
			}
			if (err == nil && got != tt.wantRelease) || !strings.Contains(got, tt.wantRelease) {
				t.Errorf("release = %q, want %q", got, tt.wantRelease)
			}
			if p := h.payload(tt.data); !bytes.Equal(p, tt.wantPayload) {
				t.Errorf("payload = %q, want %q", p, tt.wantPayload)
			}
		})
	}
	if _, ok := parseBzHeader([]byte("\x7fELF")); ok {
		t.Error("an ELF file parsed as a bzImage")
	}
}
