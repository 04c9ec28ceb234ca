package main

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// The files a package installs beside the binary, and its scripts.
//
//go:embed files
var packageFiles embed.FS

// Where the package puts them: Debian and Fedora both read units, sysusers
// and tmpfiles entries from /usr/lib (merged /usr).
const (
	unitPath     = "/usr/lib/systemd/system/ferry.service"
	configPath   = "/etc/ferry/ferry.yaml"
	sysusersPath = "/usr/lib/sysusers.d/ferry.conf"
	tmpfilesPath = "/usr/lib/tmpfiles.d/ferry.conf"
	binaryPath   = "/usr/bin/ferry"
)

// pkgVersion is version in a form dpkg and rpm both accept: a leading v
// dropped, and anything but a release (N.N...: a commit hash from git
// describe with no tag) as 0.0.0~git.HASH, which sorts before any release.
func pkgVersion(version string) string {
	v := strings.TrimPrefix(version, "v")
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '.', r == '+', r == '~':
			return r
		}
		return '.'
	}, v)
	if !releaseVersion.MatchString(clean) {
		return "0.0.0~git." + clean
	}
	return clean
}

var releaseVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+`)

// mtime is what every packaged file is dated: SOURCE_DATE_EPOCH when set,
// so that two builds of one commit give the same bytes.
func mtime() time.Time {
	var sec int64
	if _, err := fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &sec); err == nil {
		return time.Unix(sec, 0).UTC()
	}
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
}

// writePackage writes the .deb or .rpm of bin for t into out and returns
// its path.
func writePackage(format, bin, out, version string, t target) (string, error) {
	staged, err := os.MkdirTemp("", "ferry-dist-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staged)
	src := func(name string) string { return filepath.Join(staged, name) }
	entries, err := packageFiles.ReadDir("files")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := packageFiles.ReadFile("files/" + e.Name())
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(src(e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	when := mtime()
	mode := func(m os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Mode: m, MTime: when, Owner: "root", Group: "root"}
	}
	info := &nfpm.Info{
		Name:          "ferry",
		Arch:          t.goarch,
		Platform:      "linux",
		Version:       pkgVersion(version),
		VersionSchema: "none",
		Release:       "1",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "ferry maintainers <ferry@localhost>",
		Description:   "event-streaming broker for the edge: MQTT and Kafka in, a durable partitioned log, mirrored upstream",
		Homepage:      "https://localhost/ferry",
		License:       "Proprietary",
		MTime:         when,
		Overridables: nfpm.Overridables{
			Contents: files.Contents{
				{Source: bin, Destination: binaryPath, FileInfo: mode(0o755)},
				{Source: src("ferry.service"), Destination: unitPath, FileInfo: mode(0o644)},
				{Source: src("ferry.yaml"), Destination: configPath, Type: files.TypeConfigNoReplace, FileInfo: mode(0o644)},
				{Source: src("sysusers.conf"), Destination: sysusersPath, FileInfo: mode(0o644)},
				{Source: src("tmpfiles.conf"), Destination: tmpfilesPath, FileInfo: mode(0o644)},
			},
			Scripts: nfpm.Scripts{
				PostInstall: src("postinstall.sh"),
				PreRemove:   src("preremove.sh"),
				PostRemove:  src("postremove.sh"),
			},
			Deb: nfpm.Deb{Arch: t.deb},
			RPM: nfpm.RPM{Arch: t.rpm, Group: "System Environment/Daemons"},
		},
	}
	var packager nfpm.Packager
	switch format {
	case "deb":
		packager = deb.Default
	case "rpm":
		packager = rpm.DefaultRPM
	default:
		return "", fmt.Errorf("unknown package format %q", format)
	}
	if err := nfpm.PrepareForPackager(nfpm.WithDefaults(info), format); err != nil {
		return "", err
	}
	path := filepath.Join(out, fmt.Sprintf("ferry_%s_linux_%s.%s", pkgVersion(version), t.name, format))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
