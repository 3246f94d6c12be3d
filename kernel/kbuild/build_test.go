package kbuild_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/kernel/kbuild"
	"github.com/kata-cr/kata-cr/kernel/kbuild/kbuildtest"
)

// entries lists what the cache's built-kernel directory holds besides the
// source/object trees.
func entries(t *testing.T, cache string) []string {
	t.Helper()
	ents, _ := os.ReadDir(kernel.BuiltDir(cache))
	var out []string
	for _, e := range ents {
		if e.Name() != "trees" {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestBuildCachesAndReuses: a build on the stand-in tree merges, checks,
// builds and seals an entry; the same build again is a cache hit; the stock
// variant is another entry built on the same object tree.
func TestBuildCachesAndReuses(t *testing.T) {
	cache := t.TempDir()
	frags := kbuildtest.Fragments(t, "CONFIG_OLD_OPTION")
	src := kbuildtest.Tarball(t, kbuildtest.Tree{Drop: []string{"CONFIG_OLD_OPTION"}})
	opts := kbuild.Options{Fragments: frags, Source: src, Arch: "x86_64", CacheDir: cache, Jobs: 1}

	r, err := kbuild.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.CacheHit || r.Incremental || r.Variant != kbuild.CRIU || r.Release != "6.99.1" || r.Source.Version != "6.99.1" {
		t.Errorf("first build: hit %v incremental %v variant %s release %q source %q", r.CacheHit, r.Incremental, r.Variant, r.Release, r.Source.Version)
	}
	if !slices.Contains(r.CRIUOptions, "CHECKPOINT_RESTORE") || !slices.Contains(r.CRIUOptions, "UNIX_DIAG") {
		t.Errorf("CRIU fragment options %v lack CHECKPOINT_RESTORE or UNIX_DIAG", r.CRIUOptions)
	}
	if len(r.Whitelisted) != 1 || r.Whitelisted[0].Option != "OLD_OPTION" || r.Whitelisted[0].Whitelisted != "CONFIG_OLD_OPTION" {
		t.Errorf("whitelisted %+v, want OLD_OPTION excused by CONFIG_OLD_OPTION", r.Whitelisted)
	}
	if r.Merged != 2 || len(r.Excluded) != 1 {
		t.Errorf("merged %d excluded %v, want 2 and the !x86_64 file", r.Merged, r.Excluded)
	}
	if err := kernel.VerifySums(r.Dir); err != nil {
		t.Errorf("entry seal: %v", err)
	}
	cfg, err := kernel.Load(r.Config)
	if err != nil || !cfg.On("CHECKPOINT_RESTORE") {
		t.Errorf("built config %s lacks CHECKPOINT_RESTORE (%v)", r.Config, err)
	}

	again, err := kbuild.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !again.CacheHit || again.Name != r.Name || again.BuildSeconds != r.BuildSeconds {
		t.Errorf("second build: hit %v name %s (want %s)", again.CacheHit, again.Name, r.Name)
	}

	opts.Variant = kbuild.Stock
	stock, err := kbuild.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if stock.CacheHit || !stock.Incremental || stock.Name == r.Name || len(stock.CRIUOptions) != 0 || stock.CRIUFragment != "" {
		t.Errorf("stock build: hit %v incremental %v name %s criu %v %q", stock.CacheHit, stock.Incremental, stock.Name, stock.CRIUOptions, stock.CRIUFragment)
	}
	if got := entries(t, cache); len(got) != 2 {
		t.Errorf("cache holds %v, want the two kernels", got)
	}
	if got := kernel.BuiltNames(cache); !slices.Equal(got, []string{r.Name, stock.Name}) && !slices.Equal(got, []string{stock.Name, r.Name}) {
		t.Errorf("BuiltNames %v", got)
	}
}

// TestBuildRefusesOptionsThatDidNotLand: an option the fragments ask for
// that is not in the final .config and not whitelisted refuses the build,
// naming it, and leaves no entry.
func TestBuildRefusesOptionsThatDidNotLand(t *testing.T) {
	cache := t.TempDir()
	frags := kbuildtest.Fragments(t)
	src := kbuildtest.Tarball(t, kbuildtest.Tree{Drop: []string{"CONFIG_OLD_OPTION", "CONFIG_UNIX_DIAG"}})
	_, err := kbuild.Build(context.Background(), kbuild.Options{Fragments: frags, Source: src, CacheDir: cache, Jobs: 1})
	var nl *kbuild.NotLandedError
	if !errors.As(err, &nl) {
		t.Fatalf("error %v, want a NotLandedError", err)
	}
	var got []string
	for _, u := range nl.Options {
		got = append(got, u.Option)
	}
	if !slices.Equal(got, []string{"OLD_OPTION", "UNIX_DIAG"}) {
		t.Errorf("refused %v, want OLD_OPTION and UNIX_DIAG (the CRIU fragment's own option is checked too)", got)
	}
	if !strings.Contains(err.Error(), "CONFIG_OLD_OPTION=y (got n)") {
		t.Errorf("message %q does not name the option", err)
	}
	if e := entries(t, cache); len(e) != 0 {
		t.Errorf("a refused build left %v in the cache", e)
	}
}

// TestBuildRelativeFragments: a relative fragments path works although
// the tools run in the source tree.
func TestBuildRelativeFragments(t *testing.T) {
	frags := kbuildtest.Fragments(t)
	t.Chdir(filepath.Dir(frags))
	src := kbuildtest.Tarball(t, kbuildtest.Tree{})
	r, err := kbuild.Build(context.Background(), kbuild.Options{Fragments: filepath.Base(frags), Source: src, CacheDir: t.TempDir(), Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Fragments != frags {
		t.Errorf("fragments %s, want %s", r.Fragments, frags)
	}
}

// TestKataVersion reads the kernel Kata pins from versions.yaml above the
// fragments, and kata_config_version.
func TestKataVersion(t *testing.T) {
	root := t.TempDir()
	frags := filepath.Join(root, "tools", "packaging", "kernel", "configs", "fragments")
	if err := os.MkdirAll(frags, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := "assets:\n  kernel-arm-experimental:\n    version: \"v6.1\"\n  kernel:\n    description: \"Linux kernel\"\n    url: \"https://cdn.kernel.org/\"\n    version: \"v6.18.35\"\n  image:\n    version: \"x\"\n"
	for name, body := range map[string]string{
		filepath.Join(root, "versions.yaml"):                                       yaml,
		filepath.Join(root, "tools", "packaging", "kernel", "kata_config_version"): "170\n",
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := kbuild.KataVersionOf(frags)
	if got.Kernel != "6.18.35" || got.ConfigVersion != "170" || got.From != filepath.Join(root, "versions.yaml") {
		t.Errorf("got %+v", got)
	}
	if got := kbuild.KataVersionOf("testdata-none"); got.Kernel != "" {
		t.Errorf("no tree: got %+v", got)
	}
}
