#!/bin/sh
echo "data refreshed for $(cat /app/DATA_DATE)"
