package testload

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Modes of the memory scenarios.
const (
	// ModeMemfd keeps a counter in a shared mapping of a memfd.
	ModeMemfd = "memfd"
	// ModeHeap fills a heap (its word: the size in MiB) with a pattern
	// and keeps checking and rewriting it.
	ModeHeap = "heap"
	// heapChunk is the unit the heap mode checks and rewrites.
	heapChunk = 1 << 20
	// heapChecksPerBeat is how many chunks the heap mode checks a beat.
	heapChecksPerBeat = 8
)

func init() {
	Register(Mode{Name: ModeMemfd, Description: "a memfd with data, mapped shared, its counter written every beat", Run: runMemfd})
	Register(Mode{Name: ModeHeap, Description: "a heap of SIZE MiB (word) filled with a pattern, checked and partly rewritten every beat", Run: runHeap})
	registerWorkload(NewWorkload("memfd", "a memfd with data, mapped shared and written every beat ("+Name+" "+ModeMemfd+")",
		ModeMemfd, nil, carriedKeys(ModeMemfd, stateKeys{same: []string{"memfd_fd", "memfd_data", "memfd_agrees"}, moved: []string{"memfd_counter"}})))
	registerWorkload(NewWorkload("heap-256m", "a 256 MiB heap filled with a pattern, checked and partly rewritten every beat ("+Name+" "+ModeHeap+" 256)",
		ModeHeap, []string{"256"}, carriedKeys(ModeHeap, stateKeys{same: []string{"heap_bad", "heap_size"}, moved: []string{"heap_passes", "heap_generation"}})))
}

// memfdData is what the memfd holds after its counter.
const memfdData = "data in a memfd, mapped shared\n"

// runMemfd makes a memfd of a page holding a counter (its first 8 bytes)
// and memfdData, maps it shared, and every beat increments the counter in
// the mapping and reads the file through its fd: both must agree.
func runMemfd(ctx context.Context, s *State, _ []string) error {
	fd, err := unix.MemfdCreate("kata-cr-memfd", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	page := unix.Getpagesize()
	if err := unix.Ftruncate(fd, int64(page)); err != nil {
		return fmt.Errorf("size the memfd: %w", err)
	}
	m, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the memfd: %w", err)
	}
	copy(m[8:], memfdData)
	buf := make([]byte, 8+len(memfdData))
	return readyAndBeat(ctx, s, func() ([]string, error) {
		n := binary.LittleEndian.Uint64(m) + 1
		binary.LittleEndian.PutUint64(m, n)
		if _, err := unix.Pread(fd, buf, 0); err != nil {
			return nil, fmt.Errorf("read the memfd: %w", err)
		}
		agrees := "yes"
		if binary.LittleEndian.Uint64(buf) != n {
			agrees = fmt.Sprintf("no: the file holds %d, the mapping %d", binary.LittleEndian.Uint64(buf), n)
		}
		return []string{"memfd_fd", strconv.Itoa(fd), "memfd_counter", strconv.FormatUint(n, 10),
			"memfd_data", strconv.Quote(string(buf[8:])), "memfd_agrees", agrees}, nil
	})
}

// heap is the heap mode's memory: chunks of heapChunk bytes, chunk i
// filled with the pattern of (i, gen[i]).
type heap struct {
	mem []byte
	gen []uint64
	// next is the next chunk to check, passes the full checks done, bad
	// the chunks found not holding their pattern.
	next, passes, bad int
	generation        uint64
}

// fillChunk writes the pattern of (i, gen) into chunk i: each 8-byte word
// holds a mix of the chunk, its generation and the word's offset.
func (h *heap) fillChunk(i int) {
	c := h.mem[i*heapChunk : (i+1)*heapChunk]
	base := uint64(i)<<40 ^ h.gen[i]<<20
	for off := 0; off < heapChunk; off += 8 {
		binary.LittleEndian.PutUint64(c[off:], base^uint64(off)*0x9e3779b97f4a7c15)
	}
}

// chunkOK checks that chunk i holds its pattern.
func (h *heap) chunkOK(i int) bool {
	c := h.mem[i*heapChunk : (i+1)*heapChunk]
	base := uint64(i)<<40 ^ h.gen[i]<<20
	for off := 0; off < heapChunk; off += 8 {
		if binary.LittleEndian.Uint64(c[off:]) != base^uint64(off)*0x9e3779b97f4a7c15 {
			return false
		}
	}
	return true
}

// beat checks heapChecksPerBeat chunks and rewrites the last of them with
// its next generation.
func (h *heap) beat() {
	chunks := len(h.gen)
	for range heapChecksPerBeat {
		if !h.chunkOK(h.next) {
			h.bad++
		}
		h.next++
		if h.next == chunks {
			h.next = 0
			h.passes++
		}
	}
	last := (h.next + chunks - 1) % chunks
	h.gen[last]++
	h.generation++
	h.fillChunk(last)
}

// digest hashes the generations: with the pattern it determines the
// heap's content.
func (h *heap) digest() string {
	sum := sha256.New()
	for _, g := range h.gen {
		_ = binary.Write(sum, binary.LittleEndian, g)
	}
	return hex.EncodeToString(sum.Sum(nil))[:16]
}

func runHeap(ctx context.Context, s *State, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want the heap's size in MiB")
	}
	mib, err := strconv.Atoi(args[0])
	if err != nil || mib < 1 {
		return fmt.Errorf("heap size %q: want a positive number of MiB", args[0])
	}
	// An anonymous mapping of its own: the garbage collector neither
	// scans nor moves it.
	mem, err := unix.Mmap(-1, 0, mib*heapChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("map %d MiB: %w", mib, err)
	}
	h := &heap{mem: mem, gen: make([]uint64, mib)}
	for i := range h.gen {
		h.fillChunk(i)
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		h.beat()
		return []string{"heap_size", strconv.Itoa(mib * heapChunk), "heap_passes", strconv.Itoa(h.passes), "heap_bad", strconv.Itoa(h.bad),
			"heap_generation", strconv.FormatUint(h.generation, 10), "heap_digest", h.digest()}, nil
	})
}
