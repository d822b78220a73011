//! `Serialize` for result records whose last field, `update: bool`, JSON
//! leaves out when it is false.
//!
//! `#[serde(skip_serializing_if)]` cannot do this: it skips the field in
//! every format, and bincode, which carries records between processes and
//! into checkpoints, writes no field names, so a record written without
//! the field cannot be read back ("unexpected end of file"). The macro
//! skips it only where the format is human-readable.

/// Implements `Serialize` for a struct whose fields are the listed ones,
/// in that order, then `update: bool`: written always in binary formats,
/// and in human-readable ones (JSON) only when true. Derive `Deserialize`
/// with `#[serde(default)]` on `update`.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Debug, PartialEq, Deserialize)]
/// struct Minute {
///     t: u64,
///     #[serde(default)]
///     update: bool,
/// }
/// keyflow_dataflow::serialize_with_update!(Minute, [t]);
///
/// let first = Minute { t: 60_000, update: false };
/// assert_eq!(serde_json::to_string(&first).unwrap(), r#"{"t":60000}"#);
/// let bytes = bincode::serialize(&first).unwrap();
/// assert_eq!(bincode::deserialize::<Minute>(&bytes).unwrap(), first);
/// let again = Minute { t: 60_000, update: true };
/// assert_eq!(serde_json::to_string(&again).unwrap(), r#"{"t":60000,"update":true}"#);
/// ```
#[macro_export]
macro_rules! serialize_with_update {
    ($ty:ident $(<$param:ident>)?, [$($field:ident),* $(,)?]) => {
        impl$(<$param: $crate::__serde::Serialize>)? $crate::__serde::Serialize
            for $ty$(<$param>)?
        {
            fn serialize<S: $crate::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                use $crate::__serde::ser::SerializeStruct;
                let write_update = self.update || !serializer.is_human_readable();
                let fields = [$(stringify!($field)),*].len() + usize::from(write_update);
                let mut out = serializer.serialize_struct(stringify!($ty), fields)?;
                $(out.serialize_field(stringify!($field), &self.$field)?;)*
                if write_update {
                    out.serialize_field("update", &self.update)?;
                } else {
                    out.skip_field("update")?;
                }
                out.end()
            }
        }
    };
}
