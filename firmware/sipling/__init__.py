# sipling: secure SIP agent for ESP32 home appliances. Cores are sans-IO (see DESIGN.md).
VERSION = "0.1.0"
