// Package kbuildtest makes small stand-ins of a kernel source tarball for
// the tests of kata-cr kernel build: a tree with the top Makefile, a
// merge_config.sh and a bzImage target that take seconds, not minutes.
package kbuildtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Tree says what the stand-in does.
type Tree struct {
	// Version is the Makefile's VERSION.PATCHLEVEL.SUBLEVEL.
	Version string
	// Drop are options merge_config.sh leaves out of the final .config, as
	// Kconfig drops an option the source does not have.
	Drop []string
	// ImageKB is the size of the bzImage make writes (default 4).
	ImageKB int
}

// Tarball writes the stand-in as a .tar.gz in a temporary directory and
// returns its path.
func Tarball(t testing.TB, tr Tree) string {
	t.Helper()
	if tr.Version == "" {
		tr.Version = "6.99.1"
	}
	if tr.ImageKB == 0 {
		tr.ImageKB = 4
	}
	v := strings.SplitN(tr.Version, ".", 3)
	for len(v) < 3 {
		v = append(v, "0")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "linux-fake")
	files := map[string]string{
		"Makefile": "VERSION = " + v[0] + "\nPATCHLEVEL = " + v[1] + "\nSUBLEVEL = " + v[2] + "\nEXTRAVERSION =\n\n" +
			"bzImage:\n" +
			"\tmkdir -p $(O)/arch/x86/boot $(O)/include/config\n" +
			"\tdd if=/dev/zero of=$(O)/arch/x86/boot/bzImage bs=1024 count=" + strconv.Itoa(tr.ImageKB) + "\n" +
			"\techo " + tr.Version + " > $(O)/include/config/kernel.release\n",
		"drop.list": strings.Join(append(append([]string{}, tr.Drop...), "^$"), "\n") + "\n",
		"scripts/kconfig/merge_config.sh": "#!/bin/sh\n" +
			"# Stand-in of the kernel's merge_config.sh -r -n -O DIR FRAGMENT...\n" +
			"out=.\n" +
			"while [ $# -gt 0 ]; do case $1 in -r|-n) shift ;; -O) out=$2; shift 2 ;; *) break ;; esac; done\n" +
			"[ \"$ARCH\" = x86_64 ] || { echo \"ARCH=$ARCH\" >&2; exit 1; }\n" +
			"cat \"$@\" | grep -e '^CONFIG_' -e 'is not set' | grep -v -w -f drop.list > \"$out/.config\"\n" +
			"exit 0\n",
	}
	writeFiles(t, root, files, 0o755)
	tarball := filepath.Join(dir, "linux-fake.tar.gz")
	if out, err := exec.Command("tar", "-czf", tarball, "-C", dir, "linux-fake").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	return tarball
}

// Fragments writes a small Kata-style fragment tree (common/ and x86_64/,
// a whitelist) and returns its root.
func Fragments(t testing.TB, whitelist ...string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"common/base.conf":      "CONFIG_NAMESPACES=y\nCONFIG_NET=y\nCONFIG_UNIX=y\nCONFIG_INET=y\n",
		"common/s390-only.conf": "# !x86_64\nCONFIG_S390_ONLY=y\n",
		"x86_64/base.conf":      "CONFIG_X86_64=y\nCONFIG_64BIT=y\nCONFIG_OLD_OPTION=y\n",
		"whitelist.conf":        "# options which may be dropped in newer kernels\n" + strings.Join(whitelist, "\n") + "\n",
	}
	writeFiles(t, root, files, 0o644)
	return root
}

// writeFiles writes each name: body of files under root, with mode.
func writeFiles(t testing.TB, root string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}
