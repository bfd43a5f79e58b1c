// Package web holds the dashboard. Its sources are under src/ and are built
// with npm (`make web`, see README.md here) into dist/, which is committed so
// that `go build` needs no Node.js; `make test` rebuilds it and fails if the
// committed copy is stale.
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Dist returns the built dashboard: index.html and assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is embedded above; it cannot be missing
	}
	return sub
}
