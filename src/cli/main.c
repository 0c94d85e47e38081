#include <stdio.h>
int main(void) { puts("mcp-agent"); return 0; }
