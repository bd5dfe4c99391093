//! Encoding a result as JSON (column names and types, rows as arrays), CSV or Parquet, with
//! Arrow's own writers.

use super::{Column, QueryResult, SqlError};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::Serialize;

/// The formats a result can be returned in, chosen by the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Json,
    Csv,
    Parquet,
}

impl ResultFormat {
    /// The format for an `Accept` header: CSV or Parquet when asked for, JSON otherwise.
    pub fn from_accept(accept: Option<&str>) -> ResultFormat {
        let accept = accept.unwrap_or_default();
        if accept.contains("text/csv") {
            ResultFormat::Csv
        } else if accept.contains("application/vnd.apache.parquet") {
            ResultFormat::Parquet
        } else {
            ResultFormat::Json
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Json => "application/json",
            ResultFormat::Csv => "text/csv; charset=utf-8",
            ResultFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

impl QueryResult {
    pub fn columns(&self) -> Vec<Column> {
        self.schema
            .fields()
            .iter()
            .map(|field| Column {
                name: field.name().clone(),
                sql_type: sql_type(field.data_type()),
            })
            .collect()
    }

    pub fn encode(&self, format: ResultFormat) -> Result<Vec<u8>, SqlError> {
        let encode_error = |error: &dyn std::fmt::Display| SqlError::Encode(error.to_string());
        match format {
            ResultFormat::Json => self.to_json().map_err(|e| encode_error(&e)),
            ResultFormat::Csv => self.to_csv().map_err(|e| encode_error(&e)),
            ResultFormat::Parquet => self.to_parquet().map_err(|e| encode_error(&e)),
        }
    }

    /// `{"columns": [{"name", "type"}], "rows": [[...]], "row_count", "truncated", "elapsed_ms"}`
    fn to_json(&self) -> Result<Vec<u8>, arrow::error::ArrowError> {
        #[derive(Serialize)]
        struct Tail {
            row_count: usize,
            truncated: bool,
            elapsed_ms: f64,
        }
        let mut out = Vec::with_capacity(256 + self.rows * 64);
        out.extend_from_slice(b"{\"columns\":");
        serde_json::to_writer(&mut out, &self.columns()).map_err(json_error)?;
        out.extend_from_slice(b",\"rows\":[");
        let options = arrow_json::writer::EncoderOptions::default();
        let mut first_row = true;
        for batch in &self.batches {
            let fields = batch.schema_ref().fields().clone();
            let mut encoders = fields
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| arrow_json::writer::make_encoder(field, column, &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                if !std::mem::take(&mut first_row) {
                    out.push(b',');
                }
                out.push(b'[');
                for (index, encoder) in encoders.iter_mut().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    if encoder.is_null(row) {
                        out.extend_from_slice(b"null");
                    } else {
                        encoder.encode(row, &mut out);
                    }
                }
                out.push(b']');
            }
        }
        // The tail's object, spliced in after the rows: `{"row_count":..}` minus its brace.
        let tail = serde_json::to_vec(&Tail {
            row_count: self.rows,
            truncated: self.truncated,
            elapsed_ms: self.elapsed.as_secs_f64() * 1000.0,
        })
        .map_err(json_error)?;
        out.extend_from_slice(b"],");
        out.extend_from_slice(&tail[1..]);
        Ok(out)
    }

    fn to_csv(&self) -> Result<Vec<u8>, arrow::error::ArrowError> {
        let mut out = Vec::new();
        let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(&mut out);
        for batch in self.batches_or_empty() {
            writer.write(&batch)?;
        }
        drop(writer);
        Ok(out)
    }

    fn to_parquet(&self) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        let mut out = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, self.schema.clone(), None)?;
        for batch in self.batches_or_empty() {
            writer.write(&batch)?;
        }
        writer.close()?;
        Ok(out)
    }

    /// The batches, or one empty batch, so that an empty result still has its header.
    fn batches_or_empty(&self) -> Vec<RecordBatch> {
        if self.batches.is_empty() {
            vec![RecordBatch::new_empty(self.schema.clone())]
        } else {
            self.batches.clone()
        }
    }
}

fn json_error(error: serde_json::Error) -> arrow::error::ArrowError {
    arrow::error::ArrowError::JsonError(error.to_string())
}

/// DuckDB's name for the type a column arrived as.
fn sql_type(data_type: &DataType) -> String {
    let name = match data_type {
        DataType::Null => "NULL",
        DataType::Boolean => "BOOLEAN",
        DataType::Int8 => "TINYINT",
        DataType::Int16 => "SMALLINT",
        DataType::Int32 => "INTEGER",
        DataType::Int64 => "BIGINT",
        DataType::UInt8 => "UTINYINT",
        DataType::UInt16 => "USMALLINT",
        DataType::UInt32 => "UINTEGER",
        DataType::UInt64 => "UBIGINT",
        DataType::Float16 | DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "BLOB"
        }
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Time32(_) | DataType::Time64(_) => "TIME",
        DataType::Timestamp(TimeUnit::Second, None) => "TIMESTAMP_S",
        DataType::Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP_MS",
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS",
        DataType::Timestamp(_, None) => "TIMESTAMP",
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE",
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL",
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            return format!("DECIMAL({precision},{scale})")
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) => {
            return format!("{}[]", sql_type(item.data_type()))
        }
        DataType::FixedSizeList(item, size) => return format!("{}[{size}]", sql_type(item.data_type())),
        DataType::Struct(fields) => {
            let members: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
                .collect();
            return format!("STRUCT({})", members.join(", "));
        }
        DataType::Map(..) => "MAP",
        DataType::Dictionary(_, value) => return sql_type(value),
        other => return other.to_string(),
    };
    name.to_owned()
}
