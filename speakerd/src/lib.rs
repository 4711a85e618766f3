pub mod bgp;
