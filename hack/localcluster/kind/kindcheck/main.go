//go:build kindcheck

// Command kindcheck checks a kind cluster config the way `kind create cluster --config`
// does before it creates anything, with kind's own code at the pinned version:
// encoding.Parse (apiVersion and kind, then a strict decode into the v1alpha4 types, with
// kind's defaults), the --name override, config.SetDefaultsCluster and Cluster.Validate.
//
// kind keeps its config loading and validation in internal packages, so this file is not
// built as part of this module (hence the build tag): hack/localcluster/build-kindcheck.sh
// compiles it as a command under pkg/ in a copy of kind's module at the pinned version,
// where those packages may be imported. It is here so that `go mod tidy` sees its imports.
//
//	kindcheck [-name NAME] FILE
//
// Exit 0 and "ok" when kind would accept the file, 1 and kind's error otherwise.
package main

import (
	"flag"
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
)

func main() {
	name := flag.String("name", "", "the cluster name given with kind create cluster --name (overrides the file's)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: kindcheck [-name NAME] FILE")
		os.Exit(2)
	}
	path := flag.Arg(0)
	cfg, err := encoding.Load(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
		os.Exit(1)
	}
	if *name != "" {
		cfg.Name = *name
	}
	config.SetDefaultsCluster(cfg)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
		os.Exit(1)
	}
	fmt.Printf("ok: %s (cluster %q, %d nodes)\n", path, cfg.Name, len(cfg.Nodes))
}
