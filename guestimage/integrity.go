package guestimage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// A cache entry (an image, a rootfs tar) is sealed when it is complete: a
// sidecar file NAME.seal records its size and a fingerprint, the SHA-256 of
// its first and last fingerprintSpan bytes. An entry whose seal is missing
// or does not match (a truncated file, one cut by a full disk or a killed
// build) is not used: it is removed and built again. Hashing the ends and
// not the whole keeps a cache hit cheap; truncation, the damage a killed or
// starved writer leaves, always changes the size.
const fingerprintSpan = 1 << 20

const sealSuffix = ".seal"

// seal records path as complete.
func seal(path string) error {
	size, sum, err := fingerprint(path)
	if err != nil {
		return fmt.Errorf("seal %s: %w", path, err)
	}
	tmp := path + sealSuffix + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %s\n", size, sum), 0o644); err != nil {
		return fmt.Errorf("seal %s: %w", path, err)
	}
	if err := os.Rename(tmp, path+sealSuffix); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("seal %s: %w", path, err)
	}
	return nil
}

// errDamaged says a cache entry exists but its seal does not match.
var errDamaged = errors.New("damaged")

// checkSealed reports whether path is a complete cache entry: nil when its
// seal matches, fs.ErrNotExist when there is no entry, errDamaged (with
// why) otherwise.
func checkSealed(path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	data, err := os.ReadFile(path + sealSuffix)
	if err != nil {
		return fmt.Errorf("%w: no seal (%v)", errDamaged, err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return fmt.Errorf("%w: unreadable seal", errDamaged)
	}
	wantSize, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: unreadable seal", errDamaged)
	}
	size, sum, err := fingerprint(path)
	if err != nil {
		return fmt.Errorf("%w: %v", errDamaged, err)
	}
	if size != wantSize {
		return fmt.Errorf("%w: %d bytes, %d when it was built", errDamaged, size, wantSize)
	}
	if sum != fields[1] {
		return fmt.Errorf("%w: its content changed since it was built", errDamaged)
	}
	return nil
}

// discard removes a damaged entry and its seal.
func discard(path string) {
	os.Remove(path)
	os.Remove(path + sealSuffix)
}

func fingerprint(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	if !fi.Mode().IsRegular() {
		return 0, "", fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, fingerprintSpan)); err != nil {
		return 0, "", err
	}
	if fi.Size() > fingerprintSpan {
		if _, err := io.Copy(h, io.NewSectionReader(f, fi.Size()-fingerprintSpan, fingerprintSpan)); err != nil {
			return 0, "", err
		}
	}
	return fi.Size(), hex.EncodeToString(h.Sum(nil)), nil
}
