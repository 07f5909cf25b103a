// Package btyd implements the "buy 'til you die" customer-base models the
// scoring core relies on: the BG/NBD model (Fader, Hardie & Lee 2005) for the
// probability that a customer is still alive and their expected number of
// future purchases, the Gamma-Gamma model (Fader & Hardie 2013) for their
// expected spend per purchase, maximum-likelihood fitting of both, and the
// customer lifetime value that combines them.
//
// The package is pure: it imports only the standard library, performs no I/O
// and never reads a clock. Every formula is evaluated in log space with
// math.Lgamma so that extreme inputs (x = 1000 repeat purchases, say) neither
// overflow nor produce NaN.
//
// Time is measured in an arbitrary unit chosen by the caller (weeks for the
// published CDNOW parameters); parameters fitted in one unit must be used with
// summaries in the same unit.
package btyd
