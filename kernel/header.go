package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// This file is where kernel images are told apart and their headers read:
// the x86 boot protocol's setup header of a bzImage, the EFI zboot header,
// and the magics of the other formats the kernel build produces.

// The setup header of an x86 bzImage (the kernel's Documentation/arch/x86/
// boot.rst), by offset in the file.
const (
	// bootSetupSects is setup_sects: how many 512-byte sectors of real-mode
	// setup follow the boot sector; 0 means 4.
	bootSetupSects = 0x1f1
	// bootMagic holds "HdrS".
	bootMagic = 0x202
	// bootVersion is the boot protocol version, 0x020f for 2.15.
	bootVersion = 0x206
	// bootKernelVersion (protocol 2.00) points at a NUL-terminated version
	// string, 0x200 bytes further into the file than its value says.
	bootKernelVersion = 0x20e
	// bootPayloadOffset and bootPayloadLength (protocol 2.08) locate the
	// compressed kernel, relative to the protected-mode code that follows
	// the setup sectors.
	bootPayloadOffset = 0x248
	bootPayloadLength = 0x24c
	// imageHeaderLen is how much of a file the header checks read: all of
	// the fields above, and the magics of the other formats.
	imageHeaderLen = 0x250
)

// The kernel image formats imageFormat tells apart. qemu's -kernel boots
// the first two.
const (
	formatBzImage = "bzImage"
	formatELF     = "ELF"
	formatARM64   = "arm64 Image"
	formatRISCV   = "riscv Image"
	formatZboot   = "EFI zboot"
)

// imageFormat tells a kernel image by its first bytes (imageHeaderLen of
// them, or the whole file when it is shorter): a bzImage carries the x86
// boot protocol's "HdrS" at 0x202, a vmlinux is ELF, arm64 and riscv
// Images carry their magic at 0x38 and 0x30, an EFI zboot image "zimg"
// after its "MZ". It returns "" for anything else.
func imageFormat(hdr []byte) string {
	switch {
	case bytes.HasPrefix(hdr, []byte("\x7fELF")):
		return formatELF
	case len(hdr) >= bootVersion && string(hdr[bootMagic:bootVersion]) == "HdrS":
		return formatBzImage
	case len(hdr) >= 0x40 && string(hdr[0x38:0x3c]) == "ARM\x64":
		return formatARM64
	case len(hdr) >= 0x40 && string(hdr[0x30:0x34]) == "RSC\x05":
		return formatRISCV
	case len(hdr) >= 8 && string(hdr[0:2]) == "MZ" && string(hdr[4:8]) == "zimg":
		return formatZboot
	}
	return ""
}

// readImageHeader reads the first imageHeaderLen bytes of r, fewer when
// it is shorter.
func readImageHeader(r io.Reader) ([]byte, error) {
	hdr := make([]byte, imageHeaderLen)
	n, err := io.ReadFull(r, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return hdr[:n], nil
}

// bzHeader is the setup header of a bzImage: the first bytes of the file.
type bzHeader []byte

// parseBzHeader returns the setup header at the start of data, and
// whether data is a bzImage at all.
func parseBzHeader(data []byte) (bzHeader, bool) {
	if imageFormat(data) != formatBzImage {
		return nil, false
	}
	return bzHeader(data[:min(len(data), imageHeaderLen)]), true
}

func (h bzHeader) version() uint16 { return binary.LittleEndian.Uint16(h[bootVersion:]) }

// kernelVersionAt returns the file offset of the kernel_version string.
func (h bzHeader) kernelVersionAt() (int64, error) {
	if len(h) < bootKernelVersion+2 {
		return 0, errors.New("bzImage setup header cut short")
	}
	if h.version() < 0x0200 {
		return 0, errors.New("bzImage boot protocol too old to carry a version")
	}
	off := int64(binary.LittleEndian.Uint16(h[bootKernelVersion:]))
	if off == 0 {
		return 0, errors.New("bzImage carries no kernel_version string")
	}
	return off + 0x200, nil
}

// release reads the kernel_version string of the bzImage in r, whose
// header h is, and returns its first word: the release, as uname -r
// prints it.
func (h bzHeader) release(r io.ReaderAt) (string, error) {
	at, err := h.kernelVersionAt()
	if err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := r.ReadAt(buf, at)
	if n == 0 {
		return "", fmt.Errorf("read bzImage kernel_version: %w", err)
	}
	s, _, _ := bytes.Cut(buf[:n], []byte{0})
	release, _, _ := strings.Cut(string(s), " ")
	if release == "" || !validRelease(release) {
		return "", fmt.Errorf("bzImage kernel_version %q is not a release", s)
	}
	return release, nil
}

// payload returns the compressed kernel inside data, the whole bzImage
// whose header h is; nil when the header is too short or too old (before
// protocol 2.08) to locate it, or locates it outside data.
func (h bzHeader) payload(data []byte) []byte {
	if len(h) < imageHeaderLen || h.version() < 0x0208 {
		return nil
	}
	sects := int(h[bootSetupSects])
	if sects == 0 {
		sects = 4
	}
	pm := (sects + 1) * 512
	off := int(binary.LittleEndian.Uint32(h[bootPayloadOffset:]))
	n := int(binary.LittleEndian.Uint32(h[bootPayloadLength:]))
	start, end := pm+off, pm+off+n
	if off < 0 || n <= 0 || start < pm || end > len(data) || end < start {
		return nil
	}
	return data[start:end]
}

// zbootPayload reads the EFI zboot header (drivers/firmware/efi/libstub/
// zboot-header.S): "MZ", then "zimg", the payload offset and size. ok
// says whether data is a zboot image; the payload is nil when the header
// is too short or locates it outside data.
func zbootPayload(data []byte) (payload []byte, ok bool) {
	if imageFormat(data) != formatZboot {
		return nil, false
	}
	if len(data) < 0x40 {
		return nil, true
	}
	off := int(binary.LittleEndian.Uint32(data[8:]))
	n := int(binary.LittleEndian.Uint32(data[12:]))
	if off <= 0 || n <= 0 || off+n > len(data) || off+n < off {
		return nil, true
	}
	return data[off : off+n], true
}

// isKernelImage recognises the image formats the kernel build produces,
// to tell "an image without IKCONFIG" from "some other binary": an ELF
// file only when it carries the kernel's banner.
func isKernelImage(data []byte) bool {
	switch imageFormat(data) {
	case "":
		return false
	case formatELF:
		return bytes.Contains(data, []byte("Linux version "))
	}
	return true
}
