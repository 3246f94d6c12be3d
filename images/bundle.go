package images

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The reasons a checkpoint of a bundle is refused.
const (
	ReasonBundleMissing = "images.bundle-missing"
	ReasonBundleChanged = "images.bundle-changed"
)

// Bundle is the OCI bundle a checkpointed container ran from.
type Bundle struct {
	// Dir is the bundle's directory and Rootfs its rootfs, on the host.
	Dir    string `json:"dir"`
	Rootfs string `json:"rootfs"`
	// Spec is the bundle's runtime spec, as the container ran it.
	Spec *specs.Spec `json:"spec"`
	// Fingerprint identifies the rootfs tree (TreeFingerprint): the
	// restored processes map its files, which must not have changed.
	Fingerprint string `json:"fingerprint"`
}

// TreeFingerprint hashes what identifies every entry of the tree at dir
// cheaply: its path, type, mode, size, modification time and a symlink's
// target. A rootfs of thousands of files takes milliseconds; hashing the
// contents would take seconds.
func TreeFingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d", filepath.ToSlash(rel), fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "\x00%s", target)
		}
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckBundle compares the bundle a checkpoint ran from with the host as it
// is now: its rootfs must still be there, unchanged.
func CheckBundle(m Manifest) []Problem {
	b := m.Bundle
	if b == nil {
		return nil
	}
	fi, err := os.Stat(b.Rootfs)
	if err != nil || !fi.IsDir() {
		why := "it is not a directory any more"
		if err != nil {
			why = "it no longer exists"
			if u := errors.Unwrap(err); u != nil && !errors.Is(err, fs.ErrNotExist) {
				why = u.Error()
			}
		}
		return []Problem{{ReasonBundleMissing, fmt.Sprintf("the bundle's rootfs %s is unusable: %s: the restored container needs the rootfs it was checkpointed with", b.Rootfs, why)}}
	}
	got, err := TreeFingerprint(b.Rootfs)
	if err != nil {
		return []Problem{{ReasonBundleMissing, fmt.Sprintf("the bundle's rootfs %s: %v", b.Rootfs, err)}}
	}
	if got != b.Fingerprint {
		return []Problem{{ReasonBundleChanged, fmt.Sprintf("the bundle's rootfs %s changed since the checkpoint (fingerprint %s, the manifest says %s): restore with the rootfs the checkpoint was taken with", b.Rootfs, short(got), short(b.Fingerprint))}}
	}
	return nil
}
