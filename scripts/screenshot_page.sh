#!/usr/bin/env bash
# The report's HTML page as headless Chromium draws it, with the network shut off (a proxy on a closed
# port, every host unresolvable): what shows is what the file holds. Needs `apt-get install chromium
# fonts-wqy-microhei` (a CJK font, or the queries draw as boxes).
#
#   bash scripts/screenshot_page.sh [PAGE] [PNG]    # defaults: metrics/report.html docs/report-page.png
set -euo pipefail
page=$(realpath "${1:-metrics/report.html}")
png=${2:-docs/report-page.png}
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --proxy-server=127.0.0.1:9 \
  --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1400,1500 --screenshot="$png" "file://$page" 2>/dev/null
echo "wrote $png"
