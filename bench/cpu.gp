# CPU-seconds per 1000 probes, vantage beside blackbox_exporter; the bench sets datafile and outfile.
set terminal pngcairo noenhanced size 960,540 font "sans,11"
set output outfile
set title "CPU-seconds per 1000 probes (lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "CPU-seconds"
set yrange [0:*]
set grid ytics
set key top left
set xtics nomirror scale 0 font ",10"
set datafile missing "NaN"
plot datafile using 2:xtic(1) title "vantage" linecolor rgb "#2a7ab0", \
     '' using 3 title "blackbox_exporter" linecolor rgb "#e0892b", \
     '' using 4 title "rustls handshake floor" linecolor rgb "#8c8c8c", \
     '' using 5 title "rustls floor, gentle close" linecolor rgb "#5a5a5a"
