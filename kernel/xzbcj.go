package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// The kernel compresses an x86 bzImage payload with xz's x86 BCJ filter in
// front of LZMA2 (scripts/xz_wrap.sh). github.com/ulikunitz/xz reads only
// plain LZMA2 blocks, so this file reads the first block of such a stream
// itself: the LZMA2 data through ulikunitz's raw LZMA2 reader, then the BCJ
// filter undone. Checksums are not verified: the result is only searched
// for an embedded config, which carries its own gzip CRC.

// xz filter IDs (xz file format specification, 5.3).
const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

// xzFilters returns the filter chain of the first block of an xz stream.
func xzFilters(data []byte) (ids []uint64, props [][]byte, blockData []byte, err error) {
	const streamHeaderLen = 12
	if len(data) < streamHeaderLen+1 || !bytes.HasPrefix(data, magicXZ) {
		return nil, nil, nil, errors.New("not an xz stream")
	}
	b := data[streamHeaderLen:]
	if b[0] == 0 {
		return nil, nil, nil, errors.New("xz stream has no block")
	}
	hlen := (int(b[0]) + 1) * 4
	if hlen > len(b) {
		return nil, nil, nil, io.ErrUnexpectedEOF
	}
	h := bytes.NewReader(b[1 : hlen-4])
	flags, err := h.ReadByte()
	if err != nil {
		return nil, nil, nil, err
	}
	if flags&0x40 != 0 {
		if _, err := binary.ReadUvarint(h); err != nil {
			return nil, nil, nil, err
		}
	}
	if flags&0x80 != 0 {
		if _, err := binary.ReadUvarint(h); err != nil {
			return nil, nil, nil, err
		}
	}
	for i := 0; i < int(flags&3)+1; i++ {
		id, err := binary.ReadUvarint(h)
		if err != nil {
			return nil, nil, nil, err
		}
		n, err := binary.ReadUvarint(h)
		if err != nil || n > 64 {
			return nil, nil, nil, errors.New("xz block header is corrupt")
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(h, p); err != nil {
			return nil, nil, nil, err
		}
		ids = append(ids, id)
		props = append(props, p)
	}
	return ids, props, b[hlen:], nil
}

// needsBCJ reports whether the first block of xz data uses the x86 filter.
func needsBCJ(data []byte) bool {
	ids, _, _, err := xzFilters(data)
	return err == nil && len(ids) == 2 && ids[0] == xzFilterX86 && ids[1] == xzFilterLZMA2
}

// decompressXZBCJ decodes the first block of an xz stream whose filter
// chain is x86 BCJ then LZMA2, up to limit bytes.
func decompressXZBCJ(data []byte, limit int64) ([]byte, error) {
	ids, props, block, err := xzFilters(data)
	if err != nil {
		return nil, err
	}
	if len(ids) != 2 || ids[0] != xzFilterX86 || ids[1] != xzFilterLZMA2 {
		return nil, fmt.Errorf("xz filter chain %x is not supported", ids)
	}
	var start uint32
	switch len(props[0]) {
	case 0:
	case 4:
		start = binary.LittleEndian.Uint32(props[0])
	default:
		return nil, errors.New("xz x86 filter properties are corrupt")
	}
	if len(props[1]) != 1 || props[1][0] > 40 {
		return nil, errors.New("xz LZMA2 properties are corrupt")
	}
	dictCap := lzma2DictSize(props[1][0])
	if dictCap < lzma.MinDictCap {
		dictCap = lzma.MinDictCap
	}
	r, err := lzma.Reader2Config{DictCap: dictCap}.NewReader2(bytes.NewReader(block))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(r, limit+1))
	if n > limit {
		return nil, errTooLarge
	}
	if err != nil && out.Len() == 0 {
		return nil, err
	}
	buf := out.Bytes()
	bcjX86Decode(buf, start)
	return buf, nil
}

// lzma2DictSize decodes the LZMA2 dictionary size property.
func lzma2DictSize(p byte) int {
	if p == 40 {
		return 1<<32 - 1
	}
	return (2 | int(p&1)) << (p/2 + 11)
}

// bcjX86Decode undoes the x86 branch converter over buf in place: the
// encoder turned the relative targets of E8 (call) and E9 (jmp)
// instructions into absolute ones to make them compress better; this turns
// them back. pos is the stream position of buf[0].
func bcjX86Decode(buf []byte, pos uint32) {
	if len(buf) <= 4 {
		return
	}
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	msByte := func(b byte) bool { return b == 0x00 || b == 0xff }

	end := len(buf) - 4
	prevPos := -1
	var prevMask uint32
	for i := 0; i < end; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		dist := i - prevPos
		if dist > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << uint(dist-1)) & 7
			if prevMask != 0 {
				b := buf[i+4-int(bitNum[prevMask])]
				if !allowed[prevMask] || msByte(b) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !msByte(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (pos + uint32(i) + 5)
			if prevMask == 0 {
				break
			}
			j := bitNum[prevMask] * 8
			if !msByte(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= 0 - (dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
}
