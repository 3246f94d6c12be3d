package guest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/kernel"
)

// LoadModules loads names (with what they need) from the image's modules
// directory; the image builder resolved and shipped them for this kernel.
func LoadModules(dir string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if dir == "" {
		return nil, fmt.Errorf("the image lists modules %v but ships no modules directory", names)
	}
	loaded, err := kernel.LoadModules(dir, names...)
	if len(loaded) > 0 {
		// What CRIU cached of the kernel predates the modules.
		err = errors.Join(err, criu.ForgetKerndat())
	}
	return loaded, err
}

// LoadCRIUModules loads the modules the image ships for CRIU.
func (s *Session) LoadCRIUModules() error {
	m := s.Manifest
	if len(m.CRIUModules) == 0 {
		return nil
	}
	s.Progress("modules", "loading %s", strings.Join(m.CRIUModules, " "))
	loaded, err := LoadModules(m.ModulesDir, m.CRIUModules)
	if err != nil {
		return fmt.Errorf("load CRIU modules: %w", err)
	}
	s.Logf("loaded %d modules: %s", len(loaded), strings.Join(loaded, " "))
	return nil
}

// LoadContainerModules loads the modules the image ships for a bundle's
// container: 9p for the share of its rootfs, overlay for its root.
func (s *Session) LoadContainerModules() error {
	m := s.Manifest
	if len(m.ContainerModules) == 0 {
		return nil
	}
	s.Progress("modules", "loading %s", strings.Join(m.ContainerModules, " "))
	loaded, err := LoadModules(m.ModulesDir, m.ContainerModules)
	if err != nil {
		return fmt.Errorf("load the container's modules: %w", err)
	}
	s.Logf("loaded %d modules: %s", len(loaded), strings.Join(loaded, " "))
	return nil
}
