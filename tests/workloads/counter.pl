#!/usr/bin/env perl
# counter.pl [DELAY_MS]: prints "count N" for N = 1, 2, ... with a short sleep,
# flushing each line. Checks its own state: a hash of the counts seen so far.
use strict;
use warnings;
use Time::HiRes qw(usleep);

my $delay = (@ARGV ? $ARGV[0] : 50) * 1000;
$| = 1;
my %seen;
my $n = 0;
while (1) {
    $n++;
    $seen{$n} = $n * 2;
    if (scalar(keys %seen) != $n || $seen{$n} != 2 * $n || ($n > 1 && $seen{$n - 1} != 2 * ($n - 1))) {
        print "FAIL state broken at count $n\n";
        exit 1;
    }
    print "count $n\n";
    usleep($delay);
}
