#include <cstdio>
int main() { std::puts("sdrt"); return 0; }
