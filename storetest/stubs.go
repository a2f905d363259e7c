package storetest

import "testing"

func runHistory(t *testing.T, ns NewStore)     {}
func runConcurrency(t *testing.T, ns NewStore) {}
func runProperty(t *testing.T, ns NewStore)    {}
