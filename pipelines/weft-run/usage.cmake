# Turns usage.txt into usage.h: one C string, WR_USAGE.
file(READ ${IN} text)
string(REPLACE "\\" "\\\\" text "${text}")
string(REPLACE "\"" "\\\"" text "${text}")
string(REPLACE "\n" "\\n\"\n\"" text "${text}")
file(WRITE ${OUT} "/* generated from usage.txt */\nstatic const char WR_USAGE[] =\n\"${text}\";\n")
