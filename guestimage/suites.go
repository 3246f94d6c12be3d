package guestimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Suite is a Debian suite kata-cr can ship CRIU from (--criu-suite): a
// rootfs of it with CRIU and GNU tar is built once with mmdebstrap and
// cached.
type Suite struct {
	Name string
	// CRIU is the version of CRIU the suite carried when the table was
	// written; the payload reports the one it really has.
	CRIU string
	// IgnoreValidUntil says the suite's Release file may be past its
	// Valid-Until date on the mirrors kata-cr meets (forky and sid have
	// been served expired): apt is told not to check it.
	IgnoreValidUntil bool
}

// TrixieSuite is the Debian suite whose CRIU (4.1.1) copes with kernels
// from 6.13 on.
const TrixieSuite = "trixie"

// Suites are the suites of --criu-suite, oldest first.
var Suites = []Suite{
	{Name: "bookworm", CRIU: "3.17.1"},
	{Name: TrixieSuite, CRIU: "4.1.1"},
	{Name: "forky", CRIU: "4.2.1", IgnoreValidUntil: true},
	{Name: "sid", CRIU: "4.2.1", IgnoreValidUntil: true},
}

// SuiteNames lists the suites' names, oldest first.
func SuiteNames() []string {
	out := make([]string, len(Suites))
	for i, s := range Suites {
		out[i] = s.Name
	}
	return out
}

// LookupSuite returns the suite called name.
func LookupSuite(name string) (Suite, error) {
	for _, s := range Suites {
		if s.Name == name {
			return s, nil
		}
	}
	return Suite{}, fmt.Errorf("unknown Debian suite %q: kata-cr ships CRIU from %s", name, strings.Join(SuiteNames(), ", "))
}

// aptOptions are the mmdebstrap --aptopt arguments suite needs.
func aptOptions(suite string) []string {
	if s, err := LookupSuite(suite); err == nil && s.IgnoreValidUntil {
		return []string{`--aptopt=Acquire::Check-Valid-Until "false"`}
	}
	return nil
}

// SuiteCRIU is CRIU from a rootfs of the Debian suite name, which
// mmdebstrap builds once into cacheDir/rootfs/SUITE.tar; the payload is
// extracted into cacheDir/rootfs/SUITE. A suite's CRIU needs the suite's
// libc, so the payload carries its loader and libraries.
func SuiteCRIU(ctx context.Context, cacheDir, name string) (*CRIUPayload, error) {
	s, err := LookupSuite(name)
	if err != nil {
		return nil, err
	}
	if cacheDir == "" {
		return nil, fmt.Errorf("%s criu: no cache directory given", s.Name)
	}
	unlock, err := lockCache(ctx, filepath.Join(cacheDir, "rootfs"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	tarPath := filepath.Join(cacheDir, "rootfs", s.Name+".tar")
	err = checkSealed(tarPath)
	if errors.Is(err, errDamaged) {
		// A truncated tar (a full disk, a copy cut short) would give a
		// payload with files missing: build it again.
		discard(tarPath)
		err = fs.ErrNotExist
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := mmdebstrapTar(ctx, s.Name, tarPath); err != nil {
			return nil, err
		}
		if err := seal(tarPath); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("%s rootfs %s: %w", s.Name, tarPath, err)
	}
	return rootfsPayload(ctx, tarPath, filepath.Join(cacheDir, "rootfs", s.Name))
}
