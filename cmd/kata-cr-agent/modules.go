package main

import (
	"fmt"
	"strings"

	"github.com/kata-cr/kata-cr/kernel"
)

// loadModules loads names (with what they need) from the image's modules
// directory; the image builder resolved and shipped them for this kernel.
func loadModules(dir string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if dir == "" {
		return nil, fmt.Errorf("the image lists modules %v but ships no modules directory", names)
	}
	return kernel.LoadModules(dir, names...)
}

// loadCRIUModules loads the modules the image ships for CRIU.
func (s *session) loadCRIUModules() error {
	m := s.manifest
	if len(m.CRIUModules) == 0 {
		return nil
	}
	s.progress("modules", "loading %s", strings.Join(m.CRIUModules, " "))
	loaded, err := loadModules(m.ModulesDir, m.CRIUModules)
	if err != nil {
		return fmt.Errorf("load CRIU modules: %w", err)
	}
	s.logf("loaded %d modules: %s", len(loaded), strings.Join(loaded, " "))
	return nil
}
