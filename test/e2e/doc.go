// Package e2e runs the real calnet binary end to end: the offline trust
// workflow, bad input, and tampered chains.
package e2e
