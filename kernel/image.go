package kernel

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"
	"github.com/ulikunitz/xz/lzma"
)

// The compressions a kernel image or a config can use, as named by the
// kernel's CONFIG_KERNEL_* options.
const (
	compGzip  = "gzip"
	compXZ    = "xz"
	compZstd  = "zstd"
	compBzip2 = "bzip2"
	compLZMA  = "lzma"
	compLZ4   = "lz4"
	compLZO   = "lzo"
)

var (
	magicGzip  = []byte{0x1f, 0x8b, 0x08}
	magicXZ    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte{'B', 'Z', 'h'}
	magicLZ4   = []byte{0x02, 0x21, 0x4c, 0x18} // legacy frame, as the kernel writes it
	magicLZO   = []byte{0x89, 'L', 'Z', 'O', 0x00}
	// The lzma "alone" header the kernel writes: properties 0x5d and a
	// dictionary size that is a power of two (lzma -9: 64 MiB).
	magicLZMA = []byte{0x5d, 0x00, 0x00}

	ikcfgStart = []byte("IKCFG_ST")
)

// compressionAt names the compression whose magic starts data[off:], ""
// for none. lzma is only recognised where a header says so (a bzImage),
// its magic being too short to trust when scanning.
func compressionAt(data []byte, off int) string {
	d := data[off:]
	switch {
	case bytes.HasPrefix(d, magicGzip):
		return compGzip
	case bytes.HasPrefix(d, magicXZ):
		return compXZ
	case bytes.HasPrefix(d, magicZstd):
		return compZstd
	case bytes.HasPrefix(d, magicBzip2) && len(d) > 3 && d[3] >= '1' && d[3] <= '9':
		return compBzip2
	case bytes.HasPrefix(d, magicLZ4):
		return compLZ4
	}
	return ""
}

// payloadCompression also accepts lzma and lzo, for payloads whose start a
// header gives.
func payloadCompression(p []byte) string {
	if k := compressionAt(p, 0); k != "" {
		return k
	}
	switch {
	case bytes.HasPrefix(p, magicLZMA):
		return compLZMA
	case bytes.HasPrefix(p, magicLZO):
		return compLZO
	}
	return ""
}

var errTooLarge = errors.New("decompressed data too large")

// ratioLimit bounds what n compressed bytes may inflate to. Kernels and
// configs compress about 4 to 10 times; a stream that claims much more is
// a decompression bomb, not a kernel.
func ratioLimit(n int) int64 {
	l := int64(n)*32 + 1<<20
	if l > maxInput {
		return maxInput
	}
	return l
}

// decompress inflates data compressed with kind, up to limit bytes. With
// strict, trailing garbage and truncation are errors; without, whatever
// decompressed before the problem is returned, because a kernel image's
// payload is followed by the uncompressed size and padding.
func decompress(kind string, data []byte, limit int64, strict bool) ([]byte, error) {
	var r io.Reader
	switch kind {
	case compGzip:
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		if !strict {
			zr.Multistream(false)
		}
		r = zr
	case compXZ:
		// therootcompany/xz (xz-embedded in Go) undoes the BCJ filters
		// that the kernel puts in front of LZMA2 in an image's payload
		// (scripts/xz_wrap.sh: x86, ARM, ...). Its dictionary limit, 64
		// MiB, is what xz -9 uses; the kernel uses 32 MiB.
		xr, err := xz.NewReader(bytes.NewReader(data), 0)
		if err != nil {
			return nil, err
		}
		xr.Multistream(strict)
		r = xr
	case compZstd:
		zr, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case compBzip2:
		r = bzip2.NewReader(bytes.NewReader(data))
	case compLZMA:
		lr, err := lzma.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		r = lr
	case compLZ4:
		r = lz4.NewReader(bytes.NewReader(data))
	case compLZO:
		return nil, errors.New("lzo-compressed kernels are not supported: give the kernel's .config instead")
	default:
		return nil, fmt.Errorf("unknown compression %q", kind)
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(r, limit+1))
	if n > limit {
		return nil, errTooLarge
	}
	if err != nil && (strict || out.Len() == 0) {
		return nil, err
	}
	return out.Bytes(), nil
}

// findIKConfig looks for the IKCFG_ST marker that CONFIG_IKCONFIG puts in
// front of the gzip'd config inside vmlinux. It returns nil, nil when there
// is none, and an error only when a marker is there but what follows it is
// not a config.
func findIKConfig(data []byte, source string) (*Config, error) {
	var lastErr error
	for off := 0; ; {
		i := bytes.Index(data[off:], ikcfgStart)
		if i < 0 {
			break
		}
		start := off + i + len(ikcfgStart)
		off = start
		if !bytes.HasPrefix(data[start:], magicGzip) {
			continue
		}
		// The config ends at IKCFG_ED; gzip stops at the end of its member.
		cfg, err := decompress(compGzip, data[start:], ratioLimit(len(data)-start), false)
		if err != nil || !looksLikeText(cfg) {
			lastErr = fmt.Errorf("%s: embedded config (IKCONFIG) is corrupt", source)
			continue
		}
		c, err := Parse(bytes.NewReader(cfg), source)
		if err != nil {
			lastErr = err
			continue
		}
		return c, nil
	}
	return nil, lastErr
}

// maxScanCandidates bounds how many compressed streams fromImage tries in
// a file whose layout it does not know.
const maxScanCandidates = 32

// imagePayloads returns the decompressed kernel(s) inside a compressed
// kernel image, and whether data is recognisably a kernel image at all. It
// reads the x86 bzImage setup header and the EFI zboot header where
// present (header.go), and otherwise scans for compression magics.
func imagePayloads(data []byte) (payloads [][]byte, isImage bool) {
	if h, ok := parseBzHeader(data); ok {
		isImage = true
		if out := inflatePayload(h.payload(data)); out != nil {
			return [][]byte{out}, true
		}
	}
	if p, ok := zbootPayload(data); ok {
		isImage = true
		if out := inflatePayload(p); out != nil {
			return [][]byte{out}, true
		}
	}
	isImage = isImage || isKernelImage(data)
	tried := 0
	for off := 0; off < len(data) && tried < maxScanCandidates; off++ {
		i := indexAnyMagic(data[off:])
		if i < 0 {
			break
		}
		off += i
		tried++
		kind := compressionAt(data, off)
		out, err := decompress(kind, data[off:], ratioLimit(len(data)-off), false)
		if err == nil && len(out) > 0 {
			payloads = append(payloads, out)
		}
	}
	return payloads, isImage
}

func inflatePayload(p []byte) []byte {
	kind := payloadCompression(p)
	if kind == "" {
		// An uncompressed payload is searched as it is.
		return p
	}
	out, err := decompress(kind, p, ratioLimit(len(p)), false)
	if err != nil || len(out) == 0 {
		return nil
	}
	return out
}

// indexAnyMagic returns the offset of the first compression magic in d.
func indexAnyMagic(d []byte) int {
	best := -1
	for _, m := range [][]byte{magicGzip, magicXZ, magicZstd, magicLZ4, magicBzip2} {
		if i := bytes.Index(d, m); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}
