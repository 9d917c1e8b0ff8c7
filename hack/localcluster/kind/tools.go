//go:build tools

// Package tools pins kind's v1alpha4 config API, the schema of kind-config.yaml.
package tools

import _ "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
